using Appliance.Crush.Placement;
using Appliance.Maps;
using Appliance.Osd.Protocol;
using Microsoft.Extensions.Logging;

namespace Appliance.Client;

public sealed partial class ClusterClient
{
    /// <summary>
    /// Returns once every OSD up in the newest map holds osdmap epoch <paramref name="epoch"/> or later (or is no
    /// longer up). Fencing needs it: a client instance blocklisted at that epoch is refused by an OSD only once the
    /// OSD has the epoch, and an OSD that this client never sends a request to would otherwise go on accepting the
    /// fenced instance's late writes for as long as its map lags.
    /// </summary>
    /// <remarks>
    /// Each OSD gets a request that carries the epoch (a stat of a probe object in the map's first pool, which has
    /// no effect whatever its answer; the OSD checks pool, caps and role only after the wait): an OSD waits for the epoch a request carries before it looks at it, so
    /// any answer but "try again, I do not have it yet" is the confirmation. An OSD that does not answer is asked
    /// again until it answers or a newer map has it down. Bounded by <paramref name="ct"/>.
    /// </remarks>
    public async Task EnsureOsdsHaveEpochAsync(uint epoch, CancellationToken ct = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        await _maps.AtLeastAsync(epoch, ct);
        var confirmed = new System.Collections.Concurrent.ConcurrentDictionary<int, bool>();
        var asking = new Dictionary<int, Task>();
        var backoff = _options.RetryBackoff;
        while (true)
        {
            var map = _maps.Current!.Map;
            var pool = map.Pools.Values.FirstOrDefault();
            var pending = map.Osds.Values.Where(o => o.Up && !confirmed.ContainsKey(o.Id)).ToList();
            if (pending.Count == 0 || pool is null)
            {
                return;
            }
            foreach (var osd in pending)
            {
                if (!asking.TryGetValue(osd.Id, out var ask) || ask.IsCompleted)
                {
                    asking[osd.Id] = AskAsync(osd, pool);
                }
            }
            // Until every pending OSD answered, or a newer map changes who is up (an OSD that never answers is
            // waited for until the monitors mark it down).
            var newer = _maps.NewerThanAsync(map.Epoch);
            var answered = Task.WhenAll(pending.Select(o => asking[o.Id]));
            if (await Task.WhenAny(answered, newer).WaitAsync(ct) == answered && pending.Any(o => !confirmed.ContainsKey(o.Id)))
            {
                await Task.WhenAny(Task.Delay(backoff, ct), newer);
                ct.ThrowIfCancellationRequested();
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _options.MaxRetryBackoff.Ticks));
            }
        }

        async Task AskAsync(OsdInfo osd, PoolInfo pool)
        {
            if (await HasEpochAsync(osd, pool, epoch, ct))
            {
                confirmed[osd.Id] = true;
            }
        }
    }

    private const string EpochProbeObject = "appliance.epoch_probe";

    /// <summary>Whether <paramref name="osd"/> answered a request carrying <paramref name="epoch"/> other than "I do
    /// not have it yet"; false when it is unreachable or did not answer within a few seconds.</summary>
    private async Task<bool> HasEpochAsync(OsdInfo osd, PoolInfo pool, uint epoch, CancellationToken ct)
    {
        var session = SessionFor(osd);
        if (session is null)
        {
            return false;
        }
        var hash = OsdPlacement.ObjectHash(EpochProbeObject);
        var pg = new PgId(pool.Id, PoolPlacement.PgOf(hash, (uint)pool.PgNum));
        var tid = (ulong)Interlocked.Increment(ref _lastTid);
        var request = new OsdOpRequest(tid, Nonce, epoch, pg, EpochProbeObject, hash, [OsdOp.Stat()]);
        try
        {
            // The OSD waits up to 5 s for the epoch before it answers "try again".
            var message = await session.Client.Session.RequestAsync(OsdMessageType.OpRequest, request.Encode(), TimeSpan.FromSeconds(10), ct);
            var reply = Decode(message, osd.Id, tid);
            return !(reply.Result == OsdResult.TryAgain && reply.MapEpoch < epoch);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            _log.LogDebug("osd.{Osd} did not confirm osdmap epoch {Epoch}: {Error}", osd.Id, epoch, e.Message);
            return false;
        }
    }
}
