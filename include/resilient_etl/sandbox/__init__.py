"""Local postcodes.io and Companies House servers, faithful to shared/apis/CONTRACTS.md, with fault control."""
