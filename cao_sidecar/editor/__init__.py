"""Editor face: the LSP-framed JSON-RPC server (pygls) with the cao/* methods."""
