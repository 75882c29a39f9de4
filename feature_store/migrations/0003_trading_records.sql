-- Trading records. Orders are written before they are sent (client_order_id is the
-- idempotency key), so a restart can rebuild state without sending an order twice.
-- Money and quantities are numeric: exact decimal arithmetic, never float.

CREATE TABLE orders (
    client_order_id  text    PRIMARY KEY,
    account          text    NOT NULL DEFAULT 'paper',
    venue            text    NOT NULL,
    symbol           text    NOT NULL,
    side             text    NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type       text    NOT NULL CHECK (order_type IN ('market', 'limit')),
    quantity         numeric NOT NULL CHECK (quantity > 0),
    limit_price      numeric CHECK (limit_price > 0),
    status           text    NOT NULL CHECK (status IN
                        ('new', 'sent', 'partially_filled', 'filled', 'cancelled', 'rejected')),
    decision_id      text,
    created_ns       bigint  NOT NULL,
    updated_ns       bigint  NOT NULL,
    CHECK (order_type = 'market' OR limit_price IS NOT NULL)
);
CREATE INDEX orders_symbol_time_idx ON orders (symbol, created_ns);
CREATE INDEX orders_open_idx ON orders (status) WHERE status IN ('new', 'sent', 'partially_filled');

CREATE TABLE fills (
    client_order_id  text    NOT NULL REFERENCES orders (client_order_id),
    fill_id          text    NOT NULL,
    ts_ns            bigint  NOT NULL,
    symbol           text    NOT NULL,
    side             text    NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity         numeric NOT NULL CHECK (quantity > 0),
    price            numeric NOT NULL CHECK (price > 0),
    fee              numeric NOT NULL,
    liquidity        text    NOT NULL CHECK (liquidity IN ('maker', 'taker')),
    PRIMARY KEY (client_order_id, fill_id)
);
CREATE INDEX fills_symbol_time_idx ON fills (symbol, ts_ns);

CREATE TABLE positions (
    account        text    NOT NULL,
    symbol         text    NOT NULL,
    quantity       numeric NOT NULL,
    average_price  numeric NOT NULL,
    realized_pnl   numeric NOT NULL,
    updated_ns     bigint  NOT NULL,
    PRIMARY KEY (account, symbol)
);

CREATE TABLE decisions (
    decision_id          text     NOT NULL,
    ts_ns                bigint   NOT NULL,
    symbol               text     NOT NULL,
    forecast             float8,
    forecast_std         float8,
    sentiment            float8,
    value_at_risk        float8,
    target_position      numeric  NOT NULL,
    action               text     NOT NULL,
    reason               text     NOT NULL,
    -- e.g. {"price": "price_model:abc", "risk": "risk_model:def"}: what made the decision.
    model_versions       jsonb    NOT NULL,
    feature_set_version  text,
    PRIMARY KEY (ts_ns, decision_id)
) PARTITION BY RANGE (ts_ns);
CREATE INDEX decisions_symbol_time_idx ON decisions (symbol, ts_ns);
