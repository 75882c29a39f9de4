-- What the engine records besides trades and bars: L2 book snapshots at a fixed cadence,
-- and the batches it has written, so that a batch retried after a lost acknowledgement is
-- recognised and never stored twice.

CREATE TABLE book_snapshots (
    venue       text      NOT NULL,
    symbol      text      NOT NULL,
    ts_ns       bigint    NOT NULL,
    bid_prices  float8[]  NOT NULL,
    bid_sizes   float8[]  NOT NULL,
    ask_prices  float8[]  NOT NULL,
    ask_sizes   float8[]  NOT NULL,
    CHECK (cardinality(bid_prices) = cardinality(bid_sizes) AND cardinality(ask_prices) = cardinality(ask_sizes))
) PARTITION BY RANGE (ts_ns);
CREATE INDEX book_snapshots_symbol_time_idx ON book_snapshots (symbol, ts_ns);

CREATE TABLE recorded_batches (
    batch_id    text         PRIMARY KEY,
    kind        text         NOT NULL,
    rows        integer      NOT NULL CHECK (rows >= 0),
    written_at  timestamptz  NOT NULL DEFAULT now()
);
