"""The request pipeline: the lifecycle of one governed model call, top to bottom.

A request becomes an :class:`~odock.pipeline.exchange.Exchange`; each
:class:`~odock.pipeline.runner.Stage` runs ``before`` in list order, the
responder writes the upstream answer (unary or stream) to the client, then every stage that was
entered runs ``after`` in reverse order, on every exit path: success, rejection, upstream
failure, client disconnect. That is where leases are released, reservations settled and the
usage record written.

The order is one list, built in :func:`odock.pipeline.order.build_pipeline`::

    RecordUsage        after: write the usage record (last thing that happens)
    PreAuthGate        global IP lists and request limits
    Authenticate       API key → principal (401 unauthorized / api_key_expired / api_key_revoked)
    EarlyGate          the key's chain: IP, payload, concurrency, request rates (429)
    DecodeRequest      body → checked by its surface (400 invalid_request_body)
    ResolveModel       name → model in the key's organisation; grant check (400 / 403)
    ResolveProvider    provider and key checks; pass-through or translation (400 / 403)
    EstimateTokens     the token estimate every later gate reserves on
    FinalGate          model limits, max_tokens, TPM reservation (429 / 400)
    BudgetGate         budget and quota reservation (402 / 429)
    RecordIntent       the durable usage intent
    CallUpstream       adapter call; unary answer or open stream (502 / 504 / provider 4xx)
    ── responder writes the answer; then the after() hooks run in reverse ──

The last stage is the upstream call: while its ``before`` waits on the provider, the responder
watches the client, and a client that leaves cancels the call (recorded as 499
``client_disconnected``), so an abandoned request holds no lease or reservation until the
provider answers. A request the server itself cancels (a shutdown that ran out of grace) still
unwinds every stage it entered and is recorded as ``interrupted`` (503 ``server_shutting_down``,
sent to the client when anything can still be sent); the cancellation then goes on.

Later capabilities insert their stages into that list (safety checks and plugins around the
upstream call).

Two neighbouring stages whose work is a round trip to the same shared store (the final
rate-limit gate and the budget reservation, in production) may be grouped as
:class:`~odock.pipeline.runner.Concurrently`: both ``before`` hooks send their commands before
either waits, so the commands travel in one write and their answers come back in one read, and
both ``after`` hooks likewise.
"""
