"""Recovery: manual overrides that undo themselves, replays, backups and restores (docs/recovery.md)."""
