"""The replay exchange: a local stand-in for Coinbase and Binance, with fault switches."""
