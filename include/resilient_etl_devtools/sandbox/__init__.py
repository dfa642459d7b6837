"""Local postcodes.io and Companies House servers, faithful to shared/apis/CONTRACTS.md, with fault control."""

# The demo's Companies House quota (`make demo`, `make standalone`): pacing spreads calls over the
# window, and the real 600 per 5 minutes would make 1,000 new companies take ~8.3 minutes.
DEMO_CH_LIMIT = 100_000
