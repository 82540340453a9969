using System.Text;
using Appliance.Client;
using Appliance.Fs.Meta;
using Appliance.Maps;

namespace Appliance.Fs.Cluster;

/// <summary>A filesystem as the registry records it: its name, its pools, its stripe size.</summary>
public sealed record FsRecord(string Name, string MetaPool, string DataPool, int StripeSize)
{
    public const byte FormatVersion = 1;

    public byte[] Encode()
    {
        var w = new MetaWriter();
        w.U8(FormatVersion);
        w.String(DataPool);
        w.U32((uint)StripeSize);
        return w.ToArray();
    }

    public static FsRecord Decode(string name, string metaPool, ReadOnlySpan<byte> data)
    {
        var r = new MetaReader(data);
        r.Version(FormatVersion, $"the registry record of filesystem {name}");
        return new FsRecord(name, metaPool, r.String(), (int)r.U32());
    }
}

/// <summary>
/// Which filesystems exist: each metadata pool holds the object <see cref="RegistryObject"/>, whose omap maps a
/// filesystem's name to its <see cref="FsRecord"/>; listing reads that object in every replicated pool (one read
/// each). The monitors keep no filesystem map (yet): this is what `fs ls`, `fs mount` and `fs rm` look at.
/// </summary>
public static class FsRegistry
{
    public const string RegistryObject = "appliance.filesystems";

    /// <summary>A usable filesystem name: 1 to 64 of [A-Za-z0-9_-] (dots separate the parts of object names).</summary>
    public static string? CheckName(string name) =>
        name.Length is >= 1 and <= 64 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-')
            ? null
            : $"a filesystem name is 1 to 64 letters, digits, '_' or '-', not '{name}'";

    public static async Task<IReadOnlyList<FsRecord>> ListAsync(ClusterClient client, CancellationToken ct)
    {
        var map = client.OsdMap ?? throw new ClusterUnavailableException("the client holds no osdmap yet");
        var found = new List<FsRecord>();
        foreach (var pool in map.Pools.Values.Where(p => p.Type == PoolType.Replicated).OrderBy(p => p.Name, StringComparer.Ordinal))
        {
            try
            {
                await foreach (var (name, value) in client.OpenPool(pool.Name).ListOmapAsync(RegistryObject, ct: ct))
                {
                    found.Add(FsRecord.Decode(name, pool.Name, value));
                }
            }
            catch (ObjectNotFoundException)
            {
            }
        }
        return found;
    }

    public static async Task<FsRecord?> FindAsync(ClusterClient client, string name, CancellationToken ct) =>
        (await ListAsync(client, ct)).FirstOrDefault(r => r.Name == name);

    /// <summary>Formats the filesystem in its pools and records it. False when its superblock exists already (a
    /// filesystem of that name lives in that metadata pool, or a create of it raced this one and won).</summary>
    public static async Task<bool> CreateAsync(ClusterClient client, FsRecord record, TimeSpan timeout, CancellationToken ct)
    {
        var meta = new MetaClient(client.OpenPool(record.MetaPool), record.Name, timeout);
        var formatted = await meta.FormatAsync(0x1ED, 0, 0, ct);
        if (formatted.Errno == Errno.EEXIST)
        {
            return false;
        }
        if (!formatted.IsOk)
        {
            throw new InvalidOperationException($"formatting {record.Name} failed with errno {formatted.Errno}");
        }
        await client.OpenPool(record.MetaPool).SetOmapAsync(RegistryObject, [new(record.Name, record.Encode())], ct);
        return true;
    }

    /// <summary>The mounts a filesystem's superblock records (key: mount id, value: "host pid mountpoint").</summary>
    public static async Task<IReadOnlyList<(string Id, string Where)>> MountsAsync(MetaClient meta, CancellationToken ct)
    {
        var mounts = new List<(string, string)>();
        await foreach (var (key, value) in meta.Pool.ListOmapAsync(meta.SuperObject, MetaObjects.MountPrefix, ct: ct))
        {
            mounts.Add((key[MetaObjects.MountPrefix.Length..], Encoding.UTF8.GetString(value)));
        }
        return mounts;
    }

    public static Task RegisterMountAsync(MetaClient meta, string id, string where, CancellationToken ct) =>
        meta.Pool.SetOmapAsync(meta.SuperObject, [new(MetaObjects.MountPrefix + id, Encoding.UTF8.GetBytes(where))], ct);

    public static Task UnregisterMountAsync(MetaClient meta, string id, CancellationToken ct) =>
        meta.Pool.RemoveOmapKeysAsync(meta.SuperObject, [MetaObjects.MountPrefix + id], ct);

    /// <summary>Removes every object of the filesystem (data, then metadata, then its registry entry).</summary>
    public static async Task RemoveAsync(ClusterClient client, FsRecord record, TimeSpan timeout, CancellationToken ct)
    {
        var data = client.OpenPool(record.DataPool);
        await RemoveWithPrefixAsync(data, data, record.Name + ".d.", ct);
        var meta = new MetaClient(client.OpenPool(record.MetaPool), record.Name, timeout);
        try
        {
            await meta.Pool.RemoveAsync(MetaObjects.Watch(record.Name), ct);
        }
        catch (ObjectNotFoundException)
        {
        }
        // The superblock last: a removal cut short leaves a filesystem that still lists, and can be removed again.
        await RemoveWithPrefixAsync(client.OpenPool(record.MetaPool), meta.Pool, record.Name + ".i.", ct);
        try
        {
            await meta.Pool.RemoveAsync(meta.SuperObject, ct);
        }
        catch (ObjectNotFoundException)
        {
        }
        await client.OpenPool(record.MetaPool).RemoveOmapKeysAsync(RegistryObject, [record.Name], ct);
    }

    private static async Task RemoveWithPrefixAsync(IoContext list, IoContext remove, string prefix, CancellationToken ct)
    {
        var names = new List<string>();
        await foreach (var name in list.ListObjectsAsync(ct: ct))
        {
            if (name.StartsWith(prefix, StringComparison.Ordinal))
            {
                names.Add(name);
            }
        }
        foreach (var batch in names.Chunk(32))
        {
            await Task.WhenAll(batch.Select(async n =>
            {
                try
                {
                    await remove.RemoveAsync(n, ct);
                }
                catch (ObjectNotFoundException)
                {
                }
            }));
        }
    }
}
