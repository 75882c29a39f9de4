-- The strategy each account trades: its parameters (family, gross, band, holding, thresholds)
-- and the price model version they were validated with, as the engine last put them in force.
ALTER TABLE accounts
    ADD COLUMN strategy    jsonb,
    ADD COLUMN strategy_ns bigint;
