using System.Globalization;
using Appliance.Client;
using Appliance.Fs.Meta;

namespace Appliance.Fs.Cluster;

/// <summary>
/// `fs check`'s cluster side: reads every object of a filesystem into an <see cref="FsImage"/> for
/// <see cref="FsCheck"/>, and applies a repair. A repair writes the objects directly (not through the `fsmeta` class),
/// so it must run with no mount of the filesystem (the caller checks); one cut short leaves a filesystem a second
/// check finds and repairs.
/// </summary>
public static class FsChecker
{
    private const int InFlight = 32;

    public static async Task<FsImage> ReadAsync(ClusterClient client, FsRecord record, MetaTime now, CancellationToken ct)
    {
        var meta = new MetaClient(client.OpenPool(record.MetaPool), record.Name, TimeSpan.FromSeconds(30)).Pool;
        var inodePrefix = record.Name + ".i.";
        var inodeNames = new List<(ulong Ino, string Name)>();
        await foreach (var name in client.OpenPool(record.MetaPool).ListObjectsAsync(ct: ct))
        {
            if (name.StartsWith(inodePrefix, StringComparison.Ordinal)
                && ulong.TryParse(name.AsSpan(inodePrefix.Length), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var ino))
            {
                inodeNames.Add((ino, name));
            }
        }
        byte[]? super = null;
        try
        {
            super = (await meta.ReadAsync(MetaObjects.Super(record.Name), 0, 1 << 20, ct)).ToArray();
        }
        catch (ObjectNotFoundException)
        {
        }
        var orphans = new HashSet<ulong>();
        var locks = new Dictionary<ulong, byte[]>();
        var leases = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        if (super is not null)
        {
            await foreach (var kv in meta.ListOmapAsync(MetaObjects.Super(record.Name), MetaObjects.OrphanPrefix, ct: ct))
            {
                orphans.Add(MetaObjects.ParseOrphanKey(kv.Key));
            }
            await foreach (var kv in meta.ListOmapAsync(MetaObjects.Super(record.Name), MetaObjects.LockPrefix, ct: ct))
            {
                locks[MetaObjects.ParseLockKey(kv.Key)] = kv.Value;
            }
            await foreach (var kv in meta.ListOmapAsync(MetaObjects.Super(record.Name), MetaObjects.LeasePrefix, ct: ct))
            {
                leases[kv.Key[MetaObjects.LeasePrefix.Length..]] = kv.Value;
            }
        }
        var inodes = new Dictionary<ulong, byte[]>();
        var entries = new Dictionary<ulong, SortedDictionary<string, byte[]>>();
        foreach (var batch in inodeNames.Chunk(InFlight))
        {
            var read = await Task.WhenAll(batch.Select(async x =>
            {
                var omap = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
                try
                {
                    var data = (await meta.ReadAsync(x.Name, 0, 1 << 20, ct)).ToArray();
                    await foreach (var kv in meta.ListOmapAsync(x.Name, ct: ct))
                    {
                        omap[kv.Key] = kv.Value;
                    }
                    return (x.Ino, data, omap);
                }
                catch (ObjectNotFoundException)
                {
                    // Listed, then removed (a purge of a mount still at work): as if it had not been listed.
                    return (x.Ino, Array.Empty<byte>(), new SortedDictionary<string, byte[]>(StringComparer.Ordinal));
                }
            }));
            foreach (var (ino, data, omap) in read)
            {
                // An object with no data is an inode object with no record (entries left behind).
                if (data.Length > 0)
                {
                    inodes[ino] = data;
                }
                if (omap.Count > 0)
                {
                    entries[ino] = omap;
                }
            }
        }
        var dataPool = client.OpenPool(record.DataPool);
        var dataPrefix = record.Name + ".d.";
        var dataNames = new List<(ulong Ino, long Stripe, string Name)>();
        await foreach (var name in dataPool.ListObjectsAsync(ct: ct))
        {
            if (name.StartsWith(dataPrefix, StringComparison.Ordinal) && name[dataPrefix.Length..].Split('.') is [var i, var k]
                && ulong.TryParse(i, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var ino)
                && long.TryParse(k, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var stripe))
            {
                dataNames.Add((ino, stripe, name));
            }
        }
        var objects = new List<DataObject>();
        foreach (var batch in dataNames.Chunk(InFlight))
        {
            var stats = await Task.WhenAll(batch.Select(async d =>
            {
                try
                {
                    return (DataObject?)new DataObject(d.Ino, d.Stripe, (await dataPool.StatAsync(d.Name, ct)).Size);
                }
                catch (ObjectNotFoundException)
                {
                    return null; // listed, then removed
                }
            }));
            objects.AddRange(stats.Where(o => o.HasValue).Select(o => o!.Value));
        }
        return new FsImage
        {
            Super = super,
            Inodes = inodes,
            Entries = entries,
            Orphans = orphans,
            Locks = locks,
            Leases = leases,
            Data = objects,
            StripeSize = record.StripeSize,
            Now = now,
        };
    }

    /// <summary>Writes <paramref name="result"/>'s repair: inode records, then entries, then the orphan list and the
    /// superblock, then the data objects.</summary>
    public static async Task RepairAsync(ClusterClient client, FsRecord record, FsCheckResult result, CancellationToken ct)
    {
        var meta = new MetaClient(client.OpenPool(record.MetaPool), record.Name, TimeSpan.FromSeconds(30)).Pool;
        var repair = result.Repair;
        foreach (var (ino, value) in repair.Inodes)
        {
            var name = MetaObjects.Inode(record.Name, ino);
            if (value is null)
            {
                await IgnoreMissingAsync(meta.RemoveAsync(name, ct));
            }
            else
            {
                await meta.WriteFullAsync(name, value, ct);
            }
        }
        foreach (var dir in repair.Entries.GroupBy(e => e.Key.Dir))
        {
            var name = MetaObjects.Inode(record.Name, dir.Key);
            if (repair.Inodes.TryGetValue(dir.Key, out var gone) && gone is null)
            {
                continue;
            }
            var set = dir.Where(e => e.Value is not null).Select(e => new KeyValuePair<string, byte[]>(e.Key.Name, e.Value!)).ToList();
            var remove = dir.Where(e => e.Value is null).Select(e => e.Key.Name).ToList();
            if (set.Count > 0)
            {
                await meta.SetOmapAsync(name, set, ct);
            }
            if (remove.Count > 0)
            {
                await meta.RemoveOmapKeysAsync(name, remove, ct);
            }
        }
        var superName = MetaObjects.Super(record.Name);
        var add = repair.Orphans.Where(o => o.Value).Select(o => new KeyValuePair<string, byte[]>(MetaObjects.OrphanKey(o.Key), [])).ToList();
        var drop = repair.Orphans.Where(o => !o.Value).Select(o => MetaObjects.OrphanKey(o.Key)).ToList();
        if (add.Count > 0)
        {
            await meta.SetOmapAsync(superName, add, ct);
        }
        if (drop.Count > 0)
        {
            await meta.RemoveOmapKeysAsync(superName, drop, ct);
        }
        if (repair.Super is not null)
        {
            await meta.WriteFullAsync(superName, repair.Super, ct);
        }
        var superSet = repair.Locks.Where(l => l.Value is not null).Select(l => new KeyValuePair<string, byte[]>(MetaObjects.LockKey(l.Key), l.Value!))
            .Concat(repair.Leases.Where(l => l.Value is not null).Select(l => new KeyValuePair<string, byte[]>(MetaObjects.LeaseKey(l.Key), l.Value!))).ToList();
        var superGone = repair.Locks.Where(l => l.Value is null).Select(l => MetaObjects.LockKey(l.Key))
            .Concat(repair.Leases.Where(l => l.Value is null).SelectMany(l => new[] { MetaObjects.LeaseKey(l.Key), MetaObjects.MountPrefix + l.Key })).ToList();
        if (superSet.Count > 0)
        {
            await meta.SetOmapAsync(superName, superSet, ct);
        }
        if (superGone.Count > 0)
        {
            await meta.RemoveOmapKeysAsync(superName, superGone, ct);
        }
        var striper = new DataStriper(client.OpenPool(record.DataPool), record.Name, record.StripeSize);
        var data = client.OpenPool(record.DataPool);
        foreach (var (ino, stripe) in result.RemoveData)
        {
            await IgnoreMissingAsync(data.RemoveAsync(striper.ObjectName(ino, stripe), ct));
        }
        foreach (var (ino, stripe, size) in result.TruncateData)
        {
            await data.TruncateAsync(striper.ObjectName(ino, stripe), size, ct);
        }
    }

    private static async Task IgnoreMissingAsync(Task remove)
    {
        try
        {
            await remove;
        }
        catch (ObjectNotFoundException)
        {
        }
    }
}
