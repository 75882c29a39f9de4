-- The realized log return over the forecast horizon, filled in by the engine once it is
-- known, so that live model quality (IC of forecasts against outcomes) can be measured.
ALTER TABLE decisions ADD COLUMN realized_return float8
    CHECK (realized_return > '-Infinity' AND realized_return < 'Infinity');
CREATE INDEX decisions_outcome_idx ON decisions (ts_ns) WHERE realized_return IS NOT NULL;
