using System.Runtime.CompilerServices;
using Appliance.Osd.Protocol;

namespace Appliance.Client;

/// <summary>
/// Operations on the objects of one pool (librados' IoCtx). <see cref="ExecuteAsync"/> sends any list of
/// sub-operations, applied atomically on one object (guards included: a failed guard fails the request with
/// <see cref="GuardFailedException"/> and changes nothing); the other methods are one-op conveniences. Every call has
/// a deadline (<see cref="ClusterClientOptions.OpTimeout"/>, or the one given) and fails with a typed
/// <see cref="OsdOperationException"/>. Cheap; safe for concurrent use.
/// </summary>
public sealed class IoContext
{
    private readonly ClusterClient _client;

    internal IoContext(ClusterClient client, int poolId, string poolName, string? locator = null)
    {
        _client = client;
        PoolId = poolId;
        PoolName = poolName;
        Locator = locator;
    }

    public int PoolId { get; }
    public string PoolName { get; }

    /// <summary>The locator key (librados' <c>locator_set_key</c>): when set, objects are placed by the hash of this key
    /// instead of their name, so every object named through this context lands in one PG whatever the pool's pg_num,
    /// and a server-side method on one of them may change the others. The OSD stores an object under its name and
    /// that hash: reach it through a context with the same locator.</summary>
    public string? Locator { get; }

    /// <summary>This pool with objects placed by <paramref name="key"/>'s hash (see <see cref="Locator"/>).</summary>
    public IoContext WithLocator(string key)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        return new IoContext(_client, PoolId, PoolName, key);
    }

    private OpTarget Target(string name) => Locator is null
        ? OpTarget.ForObject(PoolId, PoolName, name)
        : new OpTarget(PoolId, PoolName, name, OsdPlacement.ObjectHash(Locator));

    /// <summary>Sends <paramref name="ops"/> on object <paramref name="name"/> to its PG's primary and returns the reply
    /// (its result is 0 or positive; a failure throws).</summary>
    public async Task<OsdOpReply> ExecuteAsync(string name, IReadOnlyList<OsdOp> ops, TimeSpan? timeout = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(ops);
        if (Limits.CheckObjectName(name) is { } bad)
        {
            throw new ArgumentException(bad, nameof(name));
        }
        if (ops.Count is 0 or > Limits.MaxOps)
        {
            throw new ArgumentException($"a request holds 1 to {Limits.MaxOps} operations, not {ops.Count}", nameof(ops));
        }
        var outcome = await _client.SubmitAsync(Target(name), ops, timeout, ct);
        return outcome.Reply;
    }

    private async Task<OsdOpOutput> OneAsync(string name, OsdOp op, CancellationToken ct)
    {
        var reply = await ExecuteAsync(name, [op], null, ct);
        return reply.Outputs.Count > 0 ? reply.Outputs[0] : OsdOpOutput.Success;
    }

    public Task CreateAsync(string name, bool exclusive = true, CancellationToken ct = default) => OneAsync(name, OsdOp.Create(exclusive), ct);

    public Task WriteAsync(string name, ulong offset, ReadOnlyMemory<byte> data, CancellationToken ct = default) =>
        OneAsync(name, OsdOp.Write(offset, data), ct);

    /// <summary>Replaces the object's data with <paramref name="data"/> (creating it).</summary>
    public Task WriteFullAsync(string name, ReadOnlyMemory<byte> data, CancellationToken ct = default) => OneAsync(name, OsdOp.WriteFull(data), ct);

    public Task AppendAsync(string name, ReadOnlyMemory<byte> data, CancellationToken ct = default) => OneAsync(name, OsdOp.Append(data), ct);

    /// <summary>Up to <paramref name="length"/> bytes from <paramref name="offset"/> (fewer at the object's end).</summary>
    public async Task<ReadOnlyMemory<byte>> ReadAsync(string name, ulong offset, ulong length, CancellationToken ct = default) =>
        (await OneAsync(name, OsdOp.Read(offset, length), ct)).Data;

    public async Task<ObjectStat> StatAsync(string name, CancellationToken ct = default)
    {
        var reply = await ExecuteAsync(name, [OsdOp.Stat()], null, ct);
        return ObjectStat.From(reply.Outputs.Count > 0 ? reply.Outputs[0] : OsdOpOutput.Success, reply.ObjectVersion);
    }

    public Task RemoveAsync(string name, CancellationToken ct = default) => OneAsync(name, OsdOp.Delete(), ct);

    public Task TruncateAsync(string name, ulong size, CancellationToken ct = default) => OneAsync(name, OsdOp.Truncate(size), ct);

    public Task ZeroAsync(string name, ulong offset, ulong length, CancellationToken ct = default) => OneAsync(name, OsdOp.Zero(offset, length), ct);

    public async Task<ReadOnlyMemory<byte>> GetXattrAsync(string name, string key, CancellationToken ct = default) =>
        (await OneAsync(name, OsdOp.GetXattr(key), ct)).Data;

    public Task SetXattrAsync(string name, string key, ReadOnlyMemory<byte> value, CancellationToken ct = default) =>
        OneAsync(name, OsdOp.SetXattr(key, value), ct);

    public Task RemoveXattrAsync(string name, string key, CancellationToken ct = default) => OneAsync(name, OsdOp.RmXattr(key), ct);

    public async Task<IReadOnlyDictionary<string, byte[]>> GetXattrsAsync(string name, CancellationToken ct = default) =>
        ToDictionary((await OneAsync(name, OsdOp.GetXattrs(), ct)).Pairs);

    /// <summary>One page of omap entries after <paramref name="startAfter"/> whose keys start with
    /// <paramref name="prefix"/>, at most <paramref name="max"/> (0: the OSD's page size).</summary>
    public async Task<OmapPage> GetOmapAsync(string name, string startAfter = "", string prefix = "", uint max = 0, CancellationToken ct = default)
    {
        var output = await OneAsync(name, OsdOp.OmapGet(startAfter, prefix, max), ct);
        return new OmapPage(output.Pairs, output.More);
    }

    /// <summary>Every omap entry whose key starts with <paramref name="prefix"/>, in key order, a page per request.</summary>
    public async IAsyncEnumerable<KeyValuePair<string, byte[]>> ListOmapAsync(string name, string prefix = "", uint pageSize = 0,
        [EnumeratorCancellation] CancellationToken ct = default)
    {
        var after = "";
        while (true)
        {
            var page = await GetOmapAsync(name, after, prefix, pageSize, ct);
            foreach (var entry in page.Entries)
            {
                yield return entry;
            }
            if (!page.More || page.Entries.Count == 0)
            {
                yield break;
            }
            after = page.Entries[^1].Key;
        }
    }

    public async Task<IReadOnlyDictionary<string, byte[]>> GetOmapValuesAsync(string name, IReadOnlyList<string> keys, CancellationToken ct = default) =>
        ToDictionary((await OneAsync(name, OsdOp.OmapGetByKeys(keys), ct)).Pairs);

    public Task SetOmapAsync(string name, IReadOnlyList<KeyValuePair<string, byte[]>> entries, CancellationToken ct = default) =>
        OneAsync(name, OsdOp.OmapSet(entries), ct);

    public Task RemoveOmapKeysAsync(string name, IReadOnlyList<string> keys, CancellationToken ct = default) => OneAsync(name, OsdOp.OmapRm(keys), ct);

    public Task ClearOmapAsync(string name, CancellationToken ct = default) => OneAsync(name, OsdOp.OmapClear(), ct);

    /// <summary>Removes the omap keys in [<paramref name="from"/>, <paramref name="to"/>).</summary>
    public Task RemoveOmapRangeAsync(string name, string from, string to, CancellationToken ct = default) => OneAsync(name, OsdOp.OmapRmRange(from, to), ct);

    /// <summary>Runs method <paramref name="method"/> of server-side class <paramref name="cls"/> on the object's primary;
    /// returns its output.</summary>
    public async Task<ReadOnlyMemory<byte>> CallAsync(string name, string cls, string method, ReadOnlyMemory<byte> input, CancellationToken ct = default) =>
        (await OneAsync(name, OsdOp.Call(cls, method, input), ct)).Data;

    /// <summary>
    /// The names of the pool's objects, PG by PG (pg 0 to pg_num-1 as the map has them when the listing starts), each PG
    /// paged with <see cref="OsdOpCode.PgList"/> from the cursor the OSD returned. Objects added while listing are
    /// seen or not; every object present throughout is listed once.
    /// </summary>
    public async IAsyncEnumerable<string> ListObjectsAsync(uint pageSize = Limits.ListPage, [EnumeratorCancellation] CancellationToken ct = default)
    {
        var map = _client.OsdMap ?? throw new ClusterUnavailableException("the client holds no osdmap yet");
        var pool = map.Pools.GetValueOrDefault(PoolId) ?? throw new PoolNotFoundException(PoolName);
        for (var seed = 0u; seed < (uint)pool.PgNum; seed++)
        {
            ReadOnlyMemory<byte> cursor = ReadOnlyMemory<byte>.Empty;
            while (true)
            {
                var outcome = await _client.SubmitAsync(OpTarget.ForPg(PoolId, PoolName, seed), [OsdOp.PgList(cursor, pageSize)], null, ct);
                var output = outcome.Reply.Outputs.Count > 0 ? outcome.Reply.Outputs[0] : OsdOpOutput.Success;
                foreach (var (objectName, _) in output.Pairs)
                {
                    yield return objectName;
                }
                if (!output.More)
                {
                    break;
                }
                if (output.Data.Length == 0)
                {
                    throw new OsdProtocolException($"osd.{outcome.Osd} said more objects follow in PG {outcome.Pg} but gave no cursor");
                }
                cursor = output.Data;
            }
        }
    }

    /// <summary>
    /// Watches object <paramref name="name"/>: <paramref name="onNotify"/> runs for each notify (acknowledged to the
    /// OSD when it returns); the watch is registered again after a map change moves the object's PG or the session
    /// reconnects. <paramref name="onError"/> hears when registering again failed (the watch may have missed
    /// notifies). Dispose the returned watch to unwatch.
    /// </summary>
    public Task<ObjectWatch> WatchAsync(string name, Func<WatchNotifyMessage, ValueTask> onNotify, Action<Exception>? onError = null,
        CancellationToken ct = default)
    {
        if (Limits.CheckObjectName(name) is { } bad)
        {
            throw new ArgumentException(bad, nameof(name));
        }
        return _client.WatchAsync(Target(name), onNotify, onError, ct);
    }

    /// <summary>Notifies the watchers of <paramref name="name"/>; completes when they all acknowledged or after
    /// <paramref name="timeout"/> (the OSD's wait), and returns the OSD's reply.</summary>
    public Task<OsdOpReply> NotifyAsync(string name, ReadOnlyMemory<byte> payload, TimeSpan timeout, CancellationToken ct = default) =>
        ExecuteAsync(name, [OsdOp.Notify(payload, (uint)Math.Clamp(timeout.TotalMilliseconds, 1, uint.MaxValue))],
            timeout + _client.Options.OpTimeout, ct);

    private static Dictionary<string, byte[]> ToDictionary(IReadOnlyList<KeyValuePair<string, byte[]>> pairs)
    {
        var d = new Dictionary<string, byte[]>(pairs.Count, StringComparer.Ordinal);
        foreach (var (k, v) in pairs)
        {
            d[k] = v;
        }
        return d;
    }

    public override string ToString() => $"pool {PoolName} ({PoolId})";
}
