-- Features and labels for training. A feature set version is a hash of its definitions;
-- rows of different versions never mix.

CREATE TABLE feature_sets (
    name        text        NOT NULL,
    version     text        NOT NULL,
    features    jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

CREATE TABLE features (
    feature_set  text     NOT NULL,
    version      text     NOT NULL,
    symbol       text     NOT NULL,
    ts_ns        bigint   NOT NULL,
    vals         float8[] NOT NULL,
    PRIMARY KEY (feature_set, version, symbol, ts_ns)
) PARTITION BY RANGE (ts_ns);
CREATE INDEX features_time_idx ON features (feature_set, version, ts_ns);

CREATE TABLE labels (
    name       text    NOT NULL,
    symbol     text    NOT NULL,
    ts_ns      bigint  NOT NULL,
    horizon_s  integer NOT NULL CHECK (horizon_s > 0),
    value      float8  NOT NULL CHECK (value > '-Infinity' AND value < 'Infinity'),
    PRIMARY KEY (name, symbol, ts_ns)
) PARTITION BY RANGE (ts_ns);
CREATE INDEX labels_time_idx ON labels (name, ts_ns);
