"""Signed receipts: the node's Ed25519 identity, the receipt document, and its offline verification."""
