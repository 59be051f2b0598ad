"""Names on the wire that the HTTP layer and the fleet both use: a node's answers are read by what ours write."""

from __future__ import annotations

# The signed receipt's field in a whole answer and in a stream's last chunk (receipts/).
RECEIPT_FIELD = "pinaivu_receipt"
# The signed receipt of a whole (not streamed) answer, as a header.
RECEIPT_HEADER = "x-pinaivu-receipt"

# A request's own stream interval, in milliseconds (0: every token as it comes); a gateway asks its
# nodes for every token with it, and paces the client's stream itself.
STREAM_INTERVAL_HEADER = "x-pinaivu-stream-interval-ms"
