using Appliance.Maps;
using System.Collections.Concurrent;
using Appliance.Osd.Daemon;
using Appliance.Osd.Pg;
using Appliance.Osd.Protocol;
using Appliance.Store;

namespace Appliance.Osd.Backend;

/// <summary>
/// A replicated PG: every member keeps whole objects. Reads come from this OSD's store (the primary's copy is
/// complete when the PG is active); a change is one store transaction here and the same change sent to every other
/// member (<see cref="RepOp"/>), acknowledged when all of them have it durable.
/// </summary>
public sealed class ReplicatedBackend(int self, PgId pg, ObjectStore store, IOsdPeers peers) : IPgBackend
{
    private readonly ConcurrentDictionary<(int Osd, Eversion Version), TaskCompletionSource> _pending = new();

    public bool SupportsOmap => true;

    public async ValueTask<ObjectMeta?> StatAsync(ObjectId oid, CancellationToken ct) => await StoreMapping.StatAsync(store, pg, oid, ct);

    public Task<byte[]> ReadAsync(ObjectId oid, long offset, int length, CancellationToken ct) => store.ReadAsync(pg.Collection, oid, offset, length, ct);

    public async ValueTask<IReadOnlyList<(long Offset, long Length)>?> AllocatedExtentsAsync(ObjectId oid, long offset, long length, CancellationToken ct) =>
        await store.AllocatedExtentsAsync(pg.Collection, oid, offset, length, ct);

    public async ValueTask<IReadOnlyDictionary<string, byte[]>> GetXattrsAsync(ObjectId oid, CancellationToken ct) =>
        await StoreMapping.UserXattrsAsync(store, pg, oid, ct);

    // Omap lives in the store's on-disk index: a read may wait for index pages, so it is awaited, never blocked on.
    public async ValueTask<IReadOnlyList<KeyValuePair<string, byte[]>>> OmapGetAsync(ObjectId oid, string prefix, string startAfter, int limit, CancellationToken ct) =>
        await store.OmapGetAsync(pg.Collection, oid, prefix.Length == 0 ? null : prefix, startAfter.Length == 0 ? null : startAfter, limit, ct);

    public async ValueTask<byte[]?> OmapGetValueAsync(ObjectId oid, string key, CancellationToken ct) =>
        await store.OmapGetValueAsync(pg.Collection, oid, key, ct);

    public async Task SubmitAsync(PgTransaction txn, PgLogEntry entry, IReadOnlyList<int> acting, uint interval, (Eversion From, Eversion To)? trim, PgInfo? info)
    {
        var waits = new List<Task>(acting.Count);
        var t = new Transaction();
        StoreMapping.AddLogged(t, pg, txn, entry, trim, info);
        // The store orders transactions of one collection in call order, and this call happens under the PG's gate,
        // so the local copy applies in version order; so do the replicas (one session each, sent in the same order).
        waits.Add(SubmitLocalAsync(t, txn.KeepData?.Invoke()));
        ReadOnlyMemory<byte>? message = null;
        foreach (var osd in acting)
        {
            if (osd == self || osd < 0)
            {
                continue;
            }
            message ??= new RepOp(pg, interval, entry, txn, trim).Encode();
            // Completed by the replica's answer on the thread that read it, which then runs what waited (the rest of
            // the request: its reply): no hop to the thread pool per acknowledgement. Nothing waiting on it blocks.
            var done = new TaskCompletionSource();
            _pending[(osd, entry.Version)] = done;
            waits.Add(done.Task);
            try
            {
                await peers.SendAsync(osd, OsdMessageType.RepOp, message.Value, CancellationToken.None);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException)
            {
                _pending.TryRemove((osd, entry.Version), out _);
                done.TrySetException(new PeerUnavailableException(osd, $"osd.{osd} is unreachable: {e.Message}"));
            }
        }
        await Task.WhenAll(waits);
    }

    /// <summary>The local copy of a change. The store reads the data until its transaction completes, which may be
    /// after the request gave up waiting (a new interval): <paramref name="kept"/> holds the data's buffer until then.</summary>
    private async Task SubmitLocalAsync(Transaction t, IDisposable? kept)
    {
        using (kept)
        {
            await store.SubmitAsync(t);
        }
    }

    /// <summary>A replica's answer arrived.</summary>
    public void OnReply(int osd, RepOpReply reply)
    {
        if (_pending.TryRemove((osd, reply.Version), out var done))
        {
            if (reply.Result == OsdResult.Ok)
            {
                done.TrySetResult();
            }
            else
            {
                done.TrySetException(new PeerUnavailableException(osd, $"osd.{osd} refused {pg} {reply.Version}: {OsdResult.Describe(reply.Result)}"));
            }
        }
    }

    /// <summary>The interval ended: nothing pending will be answered (the next interval's peering settles what
    /// reached whom), so every waiter fails now.</summary>
    public void FailPending(string why)
    {
        foreach (var key in _pending.Keys)
        {
            if (_pending.TryRemove(key, out var done))
            {
                done.TrySetException(new PeerUnavailableException(key.Osd, why));
            }
        }
    }
}
