"""One thin router module per capability: decode the request, call one pipeline, return a response model."""
