using Appliance.Wire.Codec;

namespace Appliance.Maps.Protocol;

/// <summary>
/// One PG as its primary reports it: its state for people (<c>active+clean</c>, <c>peering</c>, ...), how many
/// objects and bytes it holds (one copy), its acting set and primary, and the osdmap epoch the report was made at.
/// </summary>
public sealed record PgStat(PgId Pg, string State, ulong Objects, ulong Bytes, IReadOnlyList<int> Acting, int Primary, uint ReportedEpoch)
{
    private const byte Version = 2;
    /// <summary>Largest <see cref="Detail"/> in bytes.</summary>
    public const int MaxDetail = 16 << 10;

    /// <summary>What <c>pg query</c> prints: the primary's account of the PG (info, past intervals, what it waits
    /// for); empty from a primary that sends none.</summary>
    public string Detail { get; init; } = "";

    internal void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        Pg.Encode(w);
        w.WriteString(State);
        w.WriteU64(Objects);
        w.WriteU64(Bytes);
        MapCodec.WriteIntList(w, Acting);
        w.WriteI32(Primary);
        w.WriteU32(ReportedEpoch);
        w.WriteString(Detail);
        w.EndStruct(m);
    }

    internal static PgStat Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "pg stat");
        var stat = new PgStat(PgId.Decode(ref r), r.ReadString(256), r.ReadU64(), r.ReadU64(), MapCodec.ReadIntList(ref r, "pg stat acting"), r.ReadI32(), r.ReadU32());
        if (s.Version >= 2)
        {
            stat = stat with { Detail = r.ReadString(MaxDetail) };
        }
        r.EndStruct(s);
        return stat;
    }

    internal static void EncodeList(WireWriter w, IReadOnlyCollection<PgStat> stats)
    {
        w.WriteU32((uint)stats.Count);
        foreach (var stat in stats)
        {
            stat.Encode(w);
        }
    }

    internal static List<PgStat> DecodeList(ref WireReader r)
    {
        var n = MapCodec.ReadCount(ref r, 30, "pg stats");
        var list = new List<PgStat>(n);
        for (var i = 0; i < n; i++)
        {
            list.Add(Decode(ref r));
        }
        return list;
    }

    /// <summary>The answer to <see cref="MonQuery.PgDump"/> (a reply's data): the PGs, in id order.</summary>
    public static byte[] EncodeDump(IReadOnlyCollection<PgStat> stats) => MapCodec.ToBytes(w => EncodeList(w, stats));

    public static IReadOnlyList<PgStat> DecodeDump(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var list = DecodeList(ref r);
        r.ExpectEnd("pg dump");
        return list;
    }
}

/// <summary>
/// What an OSD sends the leader every few seconds (<see cref="MonQuery.PgStatsReport"/>): the PGs it is primary of,
/// and its disk's capacity and use. Not committed through Paxos: the leader keeps the latest per PG in memory (see
/// node/Monitor's README).
/// </summary>
public sealed record PgStatsReport(int Osd, uint Epoch, ulong TotalBytes, ulong UsedBytes, IReadOnlyList<PgStat> Pgs)
{
    private const byte Version = 1;
    /// <summary>Most PGs one report may carry.</summary>
    public const int MaxPgs = 65536;

    public byte[] Encode()
    {
        using var w = new WireWriter(64 + (Pgs.Count * 48));
        var m = w.BeginStruct(Version, 1);
        w.WriteI32(Osd);
        w.WriteU32(Epoch);
        w.WriteU64(TotalBytes);
        w.WriteU64(UsedBytes);
        PgStat.EncodeList(w, Pgs);
        w.EndStruct(m);
        return w.ToArray();
    }

    public static PgStatsReport Decode(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var s = r.BeginStruct(Version, "pg stats report");
        var report = new PgStatsReport(r.ReadI32(), r.ReadU32(), r.ReadU64(), r.ReadU64(), PgStat.DecodeList(ref r));
        r.EndStruct(s);
        r.ExpectEnd("pg stats report");
        if (report.Pgs.Count > MaxPgs)
        {
            throw new WireFormatException($"a pg stats report carries {report.Pgs.Count} PGs, more than {MaxPgs}");
        }
        return report;
    }
}

/// <summary>A pool's use as `df` shows it: objects and bytes (one copy) summed over the PGs reported, against its
/// quotas; <see cref="PgsReported"/> of <see cref="PgNum"/> PGs had a report.</summary>
public sealed record PoolUsage(int Pool, string Name, ulong Objects, ulong Bytes, ulong QuotaMaxObjects, ulong QuotaMaxBytes, int PgsReported, int PgNum);

/// <summary>An OSD's use as `df` shows it: its disk (as it last reported; 0 when it has not) and the PGs it is in.</summary>
public sealed record OsdUsage(int Osd, ulong TotalBytes, ulong UsedBytes, int Pgs, int Primaries);

/// <summary>The answer to <see cref="MonQuery.Df"/> (a reply's data).</summary>
public sealed record DfReport(IReadOnlyList<PoolUsage> Pools, IReadOnlyList<OsdUsage> Osds)
{
    private const byte Version = 1;

    public byte[] Encode()
    {
        using var w = new WireWriter();
        var m = w.BeginStruct(Version, 1);
        w.WriteU32((uint)Pools.Count);
        foreach (var p in Pools)
        {
            w.WriteI32(p.Pool);
            w.WriteString(p.Name);
            w.WriteU64(p.Objects);
            w.WriteU64(p.Bytes);
            w.WriteU64(p.QuotaMaxObjects);
            w.WriteU64(p.QuotaMaxBytes);
            w.WriteI32(p.PgsReported);
            w.WriteI32(p.PgNum);
        }
        w.WriteU32((uint)Osds.Count);
        foreach (var o in Osds)
        {
            w.WriteI32(o.Osd);
            w.WriteU64(o.TotalBytes);
            w.WriteU64(o.UsedBytes);
            w.WriteI32(o.Pgs);
            w.WriteI32(o.Primaries);
        }
        w.EndStruct(m);
        return w.ToArray();
    }

    public static DfReport Decode(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var s = r.BeginStruct(Version, "df report");
        var n = MapCodec.ReadCount(ref r, 48, "df pools");
        var pools = new List<PoolUsage>(n);
        for (var i = 0; i < n; i++)
        {
            pools.Add(new PoolUsage(r.ReadI32(), r.ReadString(MapCodec.MaxString), r.ReadU64(), r.ReadU64(), r.ReadU64(), r.ReadU64(), r.ReadI32(), r.ReadI32()));
        }
        n = MapCodec.ReadCount(ref r, 28, "df osds");
        var osds = new List<OsdUsage>(n);
        for (var i = 0; i < n; i++)
        {
            osds.Add(new OsdUsage(r.ReadI32(), r.ReadU64(), r.ReadU64(), r.ReadI32(), r.ReadI32()));
        }
        r.EndStruct(s);
        r.ExpectEnd("df report");
        return new DfReport(pools, osds);
    }
}
