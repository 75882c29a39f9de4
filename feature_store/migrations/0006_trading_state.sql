-- What the trading engine needs to rebuild its state after a restart and to explain itself:
-- the account (initial cash, kill switch, equity peak, the last bar it checkpointed), order
-- fields for the paper broker and crash checks, the account of each decision, and risk events
-- (every denied order and every change of the risk state, with its reason).

CREATE TABLE accounts (
    account         text     PRIMARY KEY,
    initial_cash    numeric  NOT NULL CHECK (initial_cash > 0),
    created_ns      bigint   NOT NULL,
    peak_equity     numeric  NOT NULL,
    killed_ns       bigint,
    kill_reason     text,
    var99           numeric,
    checkpoint_bar_ns  bigint,
    checkpoint_ns      bigint,
    updated_ns      bigint   NOT NULL
);

ALTER TABLE orders
    ADD COLUMN filled_quantity numeric NOT NULL DEFAULT 0 CHECK (filled_quantity >= 0),
    ADD COLUMN sends           integer NOT NULL DEFAULT 0 CHECK (sends >= 0),
    ADD COLUMN eligible_ns     bigint,
    ADD COLUMN expires_ns      bigint,
    ADD COLUMN reason          text    NOT NULL DEFAULT '';
CREATE INDEX orders_account_time_idx ON orders (account, created_ns);

ALTER TABLE decisions ADD COLUMN account text NOT NULL DEFAULT 'paper';
CREATE INDEX decisions_account_time_idx ON decisions (account, ts_ns);

CREATE TABLE risk_events (
    account          text    NOT NULL,
    ts_ns            bigint  NOT NULL,
    kind             text    NOT NULL,
    symbol           text    NOT NULL,
    client_order_id  text    NOT NULL DEFAULT '',
    reason           text    NOT NULL,
    PRIMARY KEY (account, ts_ns, kind, symbol, client_order_id)
);

-- The account-wide order in which fills were applied: positions are rebuilt by replaying
-- fills in this order, which makes average prices and realized PnL come out exactly the same.
ALTER TABLE fills ADD COLUMN seq bigint;
CREATE INDEX fills_seq_idx ON fills (seq);
