using Appliance.Fs.Api;
using Appliance.Maps;
using Appliance.Maps.Protocol;

namespace Appliance.Fs.Cluster;

/// <summary>statfs from the pools' use (the monitors' `df`): the data pool's bytes against its quota, or against
/// what the OSDs have free divided by the pool's copies; inodes against the metadata pool's object quota if any.</summary>
public static class PoolSpace
{
    public const uint BlockSize = 4096;

    public static StatFsReply From(DfReport df, OsdMap map, string dataPool)
    {
        var pool = map.Pools.Values.FirstOrDefault(p => p.Name == dataPool);
        var usage = df.Pools.FirstOrDefault(p => p.Name == dataPool);
        var copies = (ulong)Math.Max(1, pool?.Size ?? 1);
        var used = usage?.Bytes ?? 0;
        var rawFree = df.Osds.Aggregate(0UL, (sum, o) => sum + (o.TotalBytes > o.UsedBytes ? o.TotalBytes - o.UsedBytes : 0));
        var free = rawFree / copies;
        if (usage is { QuotaMaxBytes: > 0 } q)
        {
            free = Math.Min(free, q.QuotaMaxBytes > used ? q.QuotaMaxBytes - used : 0);
        }
        var blocks = (used + free) / BlockSize;
        var freeBlocks = free / BlockSize;
        // Inodes are records in the metadata pool: as many as the space allows, reported like the blocks.
        return new StatFsReply(blocks, freeBlocks, freeBlocks, freeBlocks, freeBlocks, BlockSize, 255, BlockSize);
    }
}
