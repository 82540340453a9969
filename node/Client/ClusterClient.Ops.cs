using System.Diagnostics;
using Appliance.Maps;
using Appliance.Osd.Protocol;
using Appliance.Wire.Codec;
using Appliance.Wire.Messenger;
using Microsoft.Extensions.Logging;

namespace Appliance.Client;

/// <summary>What a request is about: an object of a pool (placed by its hash), or one PG (<see cref="PgSeed"/>;
/// listings, with an empty name).</summary>
internal readonly record struct OpTarget(int PoolId, string PoolName, string Object, uint Hash, uint? PgSeed = null)
{
    public static OpTarget ForObject(int poolId, string poolName, string name) => new(poolId, poolName, name, OsdPlacement.ObjectHash(name));

    public static OpTarget ForPg(int poolId, string poolName, uint seed) => new(poolId, poolName, "", seed, seed);
}

/// <summary>A completed request: the reply, and where it was answered.</summary>
internal sealed record OpOutcome(OsdOpReply Reply, PgId Pg, int Osd, OsdSession Session);

public sealed partial class ClusterClient
{
    /// <summary>Where a request goes under one map: its PG, the acting set, the primary and the primary's entry.</summary>
    private readonly record struct Route(PgId Pg, int[] Acting, int Primary, OsdInfo? PrimaryInfo)
    {
        /// <summary>A new interval for the request (Ceph's Objecter resends then too): another PG, primary or
        /// acting set, or the primary restarted or moved. The OSD may have dropped what it had in flight.</summary>
        public bool Changed(Route other) =>
            Pg != other.Pg || Primary != other.Primary || !Acting.AsSpan().SequenceEqual(other.Acting)
            || PrimaryInfo?.Address != other.PrimaryInfo?.Address || PrimaryInfo?.UpFrom != other.PrimaryInfo?.UpFrom;
    }

    /// <summary>What a request waits on now, for the message of its timeout.</summary>
    private sealed class Progress
    {
        public PgId Pg;
        public int Osd = -1;
        public string Reason = "its turn (the client's bound on requests and bytes in flight)";
        public OsdSession? Session;
        /// <summary>What went wrong on the way (a refused ticket), said in the timeout even after a later attempt.</summary>
        public string? Trouble;
    }

    private static Route RouteOf(MapView view, in OpTarget target)
    {
        if (!view.Map.Pools.TryGetValue(target.PoolId, out var pool))
        {
            throw new PoolNotFoundException(target.PoolName);
        }
        var pg = target.PgSeed is { } seed ? new PgId(pool.Id, seed) : view.PgOf(pool, target.Hash);
        var placement = view.Place(pool, pg.Seed);
        return new Route(pg, placement.Acting, placement.Primary, placement.Primary >= 0 ? view.Map.FindOsd(placement.Primary) : null);
    }

    /// <summary>What a request holds of the in-flight budget: the data it sends and the data it asks for.</summary>
    private static long CostOf(IReadOnlyList<OsdOp> ops)
    {
        long bytes = 0;
        foreach (var op in ops)
        {
            bytes += op.Data.Length + 64;
            foreach (var (k, v) in op.Pairs)
            {
                bytes += k.Length + v.Length;
            }
            if (op.Code == OsdOpCode.Read)
            {
                bytes += (long)Math.Min(op.Length, (ulong)Limits.MaxPayload);
            }
        }
        return bytes;
    }

    /// <summary>
    /// Sends <paramref name="ops"/> to the primary of <paramref name="target"/>'s PG and waits for the outcome, within
    /// <paramref name="timeout"/> (default <see cref="ClusterClientOptions.OpTimeout"/>) for everything: the wait for
    /// budget, maps, resends. A failed result throws its typed exception (<see cref="OsdErrors"/>); a request past
    /// its deadline throws <see cref="OsdRequestTimeoutException"/> naming the PG and OSD it last waited on.
    /// </summary>
    internal async Task<OpOutcome> SubmitAsync(OpTarget target, IReadOnlyList<OsdOp> ops, TimeSpan? timeout, CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var limit = timeout ?? _options.OpTimeout;
        var started = Stopwatch.GetTimestamp();
        var kind = ops.Any(o => o.IsWrite || o.Code == OsdOpCode.Call) ? "write" : "read";
        // One tid for the request's life: a resend (new map, new primary, reconnect) carries it, so the PG log
        // recognises a write it already applied and answers with its first outcome.
        var tid = (ulong)Interlocked.Increment(ref _lastTid);
        var progress = new Progress();
        if (_maps.Current is { } now && now.Map.Pools.ContainsKey(target.PoolId))
        {
            // So that a request that times out before it is routed (waiting for its turn) still names its PG.
            progress.Pg = RouteOf(now, target).Pg;
        }
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        deadline.CancelAfter(limit);
        long held = 0;
        var slot = false;
        string outcome = "ok";
        try
        {
            await _opSlots.WaitAsync(deadline.Token);
            slot = true;
            held = await _budget.TakeAsync(CostOf(ops), deadline.Token);
            var done = await RunAsync(target, ops, tid, progress, deadline.Token);
            foreach (var o in done.Reply.Outputs)
            {
                ClientMetrics.BytesReceived.Add(o.Data.Length);
            }
            if (done.Reply.Result < 0)
            {
                outcome = OsdErrors.Kind(done.Reply.Result);
                throw OsdErrors.From(done.Reply.Result, done.Reply.Message, target.Object, done.Pg, done.Osd, done.Reply);
            }
            return done;
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !ct.IsCancellationRequested && !_stop.IsCancellationRequested)
        {
            outcome = "timeout";
            var waitedOn = progress.Osd >= 0 ? $"osd.{progress.Osd} for {progress.Reason}" : progress.Reason;
            if (progress.Session is { Client.FailedConnectsInARow: > 0 and var failed })
            {
                waitedOn += $" (unreachable: {failed} failed connection attempts in a row)";
            }
            if (progress.Trouble is not null)
            {
                waitedOn += $"; {progress.Trouble}";
            }
            if (_maps.Current is { } view && view.Map.Pools.TryGetValue(target.PoolId, out var pool) && progress.Pg.Pool == pool.Id
                && progress.Pg.Seed < (uint)pool.PgNum && view.Place(pool, progress.Pg.Seed).Acting.Count(o => o >= 0) is var up && up < pool.MinSize)
            {
                // The usual cause of a request held without an answer: its primary holds I/O below min_size.
                waitedOn += $"; PG {progress.Pg} has {up} of its pool's min_size {pool.MinSize} OSDs up in osdmap epoch {view.Map.Epoch}, so it takes no I/O until more are up";
            }
            var what = target.Object.Length > 0 ? $"'{target.Object}'" : "listing";
            throw new OsdRequestTimeoutException(
                $"request {tid} on {what} in pool {target.PoolName}, PG {progress.Pg}: no outcome within {limit.TotalSeconds:0.###} s; last waited on {waitedOn}",
                target.Object, progress.Pg, progress.Osd);
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested && !ct.IsCancellationRequested)
        {
            outcome = "disposed";
            throw new ObjectDisposedException(nameof(ClusterClient), "the client was disposed while the request was in flight");
        }
        catch (OperationCanceledException)
        {
            outcome = "cancelled";
            throw;
        }
        finally
        {
            _budget.Release(held);
            if (slot)
            {
                _opSlots.Release();
            }
            ClientMetrics.Ops.Add(1, new KeyValuePair<string, object?>("kind", kind));
            if (outcome != "ok")
            {
                ClientMetrics.Errors.Add(1, new KeyValuePair<string, object?>("kind", outcome));
            }
            ClientMetrics.Latency.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds, new KeyValuePair<string, object?>("kind", kind));
        }
    }

    /// <summary>The resend loop: route under the newest map, send, and wait for the reply, a newer map that moves
    /// the request, or the session's refusal — whichever comes first. Bounded by <paramref name="ct"/> (the
    /// request's deadline).</summary>
    private async Task<OpOutcome> RunAsync(OpTarget target, IReadOnlyList<OsdOp> ops, ulong tid, Progress progress, CancellationToken ct)
    {
        var backoff = _options.RetryBackoff;
        var attempt = 0;
        progress.Reason = "the first osdmap";
        var view = _maps.Current ?? await _maps.NewerThanAsync(0).WaitAsync(ct);
        while (true)
        {
            if (_maps.Current is { } newest && newest.Map.Epoch > view.Map.Epoch)
            {
                view = newest;
            }
            var route = RouteOf(view, target);
            progress.Pg = route.Pg;
            progress.Osd = route.Primary;
            progress.Session = null;
            if (route.PrimaryInfo is null)
            {
                progress.Reason = $"an OSD of PG {route.Pg} to be up (none is in osdmap epoch {view.Map.Epoch})";
                view = await _maps.NewerThanAsync(view.Map.Epoch).WaitAsync(ct);
                continue;
            }
            var session = SessionFor(route.PrimaryInfo);
            if (session is null)
            {
                progress.Reason = $"a usable address (osdmap epoch {view.Map.Epoch} gives '{route.PrimaryInfo.Address}')";
                view = await _maps.NewerThanAsync(view.Map.Epoch).WaitAsync(ct);
                continue;
            }
            progress.Session = session;
            progress.Reason = "its reply";
            var request = new OsdOpRequest(tid, Nonce, view.Map.Epoch, route.Pg, target.Object, target.Hash, ops) { Resend = attempt > 0 };
            attempt++;
            var payload = request.Encode();
            if (payload.Length > _options.Messenger.Session.MaxPayload)
            {
                throw new InvalidRequestException(OsdResult.TooLarge,
                    $"a request of {payload.Length} bytes is larger than a message may be ({_options.Messenger.Session.MaxPayload}); split it (at most {Limits.MaxPayload} bytes of data)",
                    target.Object, route.Pg, route.Primary, null);
            }
            using var attemptCt = CancellationTokenSource.CreateLinkedTokenSource(ct);
            // No timeout of its own: the request's deadline bounds it, and the session resends on reconnect.
            // Handed over, not copied: the encoding is this attempt's own array (resends after a reconnect read it).
            var replyTask = session.Client.Session.RequestAsync(OsdMessageType.OpRequest, payload, Timeout.InfiniteTimeSpan, attemptCt.Token, withoutCopy: true);
            ClientMetrics.BytesSent.Add(payload.Length);
            string? resend = null;
            try
            {
                while (resend is null)
                {
                    var newer = _maps.NewerThanAsync(view.Map.Epoch);
                    var first = await Task.WhenAny(replyTask, newer, session.Refused).WaitAsync(ct);
                    if (first == replyTask)
                    {
                        Message message;
                        try
                        {
                            message = await replyTask;
                        }
                        catch (ConnectionClosedException)
                        {
                            // The session was closed under the request: its OSD is down or moved in a newer map (the
                            // map is taken before sessions are closed, so the newest map shows where to go now).
                            ObjectDisposedException.ThrowIf(_disposed != 0, this);
                            view = _maps.Current!;
                            resend = "connection";
                            break;
                        }
                        var reply = Decode(message, route.Primary, tid);
                        if (reply.Result != OsdResult.TryAgain)
                        {
                            return new OpOutcome(reply, route.Pg, route.Primary, session);
                        }
                        if (reply.MapEpoch > view.Map.Epoch)
                        {
                            // The OSD knows a newer map: wait for it, then route again.
                            progress.Reason = $"osdmap epoch {reply.MapEpoch} (it said try again under that epoch; the client has {view.Map.Epoch})";
                            view = await _maps.AtLeastAsync(reply.MapEpoch, ct);
                        }
                        else
                        {
                            // Same map, yet not served: the PG is peering, or the OSD has not caught up with our map.
                            // Pause (or take a newer map if one comes first), then resend.
                            progress.Reason = $"its PG to become active (it said try again under osdmap epoch {reply.MapEpoch})";
                            await Task.WhenAny(Task.Delay(backoff, ct), _maps.NewerThanAsync(view.Map.Epoch));
                            ct.ThrowIfCancellationRequested();
                            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _options.MaxRetryBackoff.Ticks));
                            view = _maps.Current!;
                        }
                        resend = "try_again";
                    }
                    else if (first == newer)
                    {
                        var next = await newer;
                        var moved = RouteOf(next, target);
                        view = next;
                        if (moved.Changed(route))
                        {
                            resend = "map_change";
                        }
                    }
                    else
                    {
                        // A refused authentication ends a messenger client: replace the session, after a pause (the OSD
                        // may not have fetched the service keys our ticket was sealed with yet).
                        var why = await session.Refused;
                        DropSession(session);
                        progress.Reason = "authentication";
                        progress.Trouble = $"osd.{session.Osd} refused our ticket: {why.Message}";
                        await Task.WhenAny(Task.Delay(backoff, ct), _maps.NewerThanAsync(view.Map.Epoch));
                        ct.ThrowIfCancellationRequested();
                        backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _options.MaxRetryBackoff.Ticks));
                        view = _maps.Current!;
                        resend = "auth";
                    }
                }
            }
            finally
            {
                // Stop waiting for this attempt's reply (a late one is dropped by the message handler).
                await attemptCt.CancelAsync();
                if (!replyTask.IsCompleted)
                {
                    _ = replyTask.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                }
            }
            ClientMetrics.Retries.Add(1, new KeyValuePair<string, object?>("reason", resend));
            _log.LogDebug("resending request {Tid} for PG {Pg} ({Reason}); osdmap epoch {Epoch}", tid, route.Pg, resend, view.Map.Epoch);
        }
    }

    private static OsdOpReply Decode(in Message message, int osd, ulong tid)
    {
        OsdOpReply reply;
        try
        {
            // A reply's payload is the caller's own (not pooled): the outputs' data slice it, no copy.
            reply = OsdOpReply.FromShared(message.Payload);
        }
        catch (WireFormatException e)
        {
            throw new OsdProtocolException($"osd.{osd} sent a reply that does not decode: {e.Message}", e);
        }
        if (message.Type != OsdMessageType.OpReply || reply.Tid != tid)
        {
            throw new OsdProtocolException($"osd.{osd} answered request {tid} with message type {message.Type} for tid {reply.Tid}");
        }
        return reply;
    }
}
