"""The supplier pipeline's steps as plain functions over the hooks; operators are thin wrappers."""
