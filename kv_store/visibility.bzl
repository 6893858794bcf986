"""Who may build on the KV store: the block-cache layer (blocks/, store_config/), the
encoder's and the prefill's tests (their stores), the benchmarks and the end-to-end tests.
The router and the decoder never do. The fuzz targets (fuzz/) read its values."""

KV_STORE_VISIBILITY = [
    "//kv_store:__subpackages__",
    "//blocks:__pkg__",
    "//store_config:__pkg__",
    "//passage_encoder:__pkg__",
    "//query_prefill:__pkg__",
    "//bench:__subpackages__",
    "//tests:__pkg__",
    "//fuzz:__pkg__",
]
