using Appliance.Wire.Codec;

namespace Appliance.Monitor.Maps;

/// <summary>One monitor: its name, messenger address (host:port) and rank (its index in name order; the Paxos
/// layer uses ranks as acceptor ids).</summary>
public sealed record MonInfo(string Name, string Address, int Rank)
{
    internal void Encode(WireWriter w)
    {
        var m = w.BeginStruct(1, 1);
        w.WriteString(Name);
        w.WriteString(Address);
        w.WriteI32(Rank);
        w.EndStruct(m);
    }

    internal static MonInfo Decode(ref WireReader r)
    {
        var s = r.BeginStruct(1, "monitor entry");
        var info = new MonInfo(r.ReadString(MapCodec.MaxString), r.ReadString(MapCodec.MaxString), r.ReadI32());
        r.EndStruct(s);
        return info;
    }
}

/// <summary>
/// The monitor map: which monitors form the cluster <see cref="Fsid"/>. Immutable; <see cref="Apply"/> returns the
/// next epoch's map. Ranks are recomputed from the names after every change, so every monitor derives the same ranks.
/// </summary>
public sealed class MonMap
{
    private const byte Version = 1;

    public MonMap(uint epoch, Guid fsid, long createdMs, IEnumerable<MonInfo> monitors)
    {
        Epoch = epoch;
        Fsid = fsid;
        CreatedMs = createdMs;
        Monitors = [.. monitors.OrderBy(m => m.Name, StringComparer.Ordinal).Select((m, i) => m with { Rank = i })];
    }

    public uint Epoch { get; }
    public Guid Fsid { get; }
    /// <summary>When the cluster was created, Unix milliseconds.</summary>
    public long CreatedMs { get; }
    /// <summary>In rank order.</summary>
    public IReadOnlyList<MonInfo> Monitors { get; }

    public MonInfo? Find(string name) => Monitors.FirstOrDefault(m => m.Name == name);

    /// <summary>The first monmap (epoch 1) of a new cluster.</summary>
    public static MonMap Create(Guid fsid, IEnumerable<(string Name, string Address)> monitors, long nowMs) =>
        new(1, fsid, nowMs, monitors.Select(m => new MonInfo(m.Name, m.Address, 0)));

    public MonMap Apply(MonMapIncrement inc)
    {
        ArgumentNullException.ThrowIfNull(inc);
        if (inc.Epoch != Epoch + 1)
        {
            throw new MapSequenceException($"monmap increment for epoch {inc.Epoch} applied to epoch {Epoch}");
        }
        var removed = inc.Removed.ToHashSet(StringComparer.Ordinal);
        foreach (var name in removed)
        {
            if (Find(name) is null)
            {
                throw new MapSequenceException($"monmap increment {inc.Epoch} removes unknown monitor {name}");
            }
        }
        var kept = Monitors.Where(m => !removed.Contains(m.Name)).ToList();
        foreach (var added in inc.Added)
        {
            if (kept.Any(m => m.Name == added.Name))
            {
                throw new MapSequenceException($"monmap increment {inc.Epoch} adds existing monitor {added.Name}");
            }
            kept.Add(added);
        }
        return new MonMap(inc.Epoch, Fsid, CreatedMs, kept);
    }

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteU32(Epoch);
        MapCodec.WriteGuid(w, Fsid);
        w.WriteI64(CreatedMs);
        w.WriteU32((uint)Monitors.Count);
        foreach (var mon in Monitors)
        {
            mon.Encode(w);
        }
        w.EndStruct(m);
    }

    public static MonMap Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "monmap");
        var epoch = r.ReadU32();
        var fsid = MapCodec.ReadGuid(ref r);
        var created = r.ReadI64();
        var n = MapCodec.ReadCount(ref r, 6, "monmap monitors");
        var mons = new List<MonInfo>(n);
        for (var i = 0; i < n; i++)
        {
            mons.Add(MonInfo.Decode(ref r));
        }
        r.EndStruct(s);
        if (mons.Select(m => m.Name).Distinct(StringComparer.Ordinal).Count() != mons.Count)
        {
            throw new WireFormatException("monmap lists a monitor twice");
        }
        return new MonMap(epoch, fsid, created, mons);
    }

    public byte[] ToBytes() => MapCodec.ToBytes(Encode);

    public static MonMap FromBytes(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var map = Decode(ref r);
        r.ExpectEnd("monmap");
        return map;
    }
}

/// <summary>The change from monmap epoch E-1 to E: monitors added (ranks are recomputed) and removed by name.</summary>
public sealed record MonMapIncrement(uint Epoch, IReadOnlyList<MonInfo> Added, IReadOnlyList<string> Removed)
{
    private const byte Version = 1;

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteU32(Epoch);
        w.WriteU32((uint)Added.Count);
        foreach (var mon in Added)
        {
            mon.Encode(w);
        }
        MapCodec.WriteStringList(w, Removed);
        w.EndStruct(m);
    }

    public static MonMapIncrement Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "monmap increment");
        var epoch = r.ReadU32();
        var n = MapCodec.ReadCount(ref r, 6, "monmap increment monitors");
        var added = new List<MonInfo>(n);
        for (var i = 0; i < n; i++)
        {
            added.Add(MonInfo.Decode(ref r));
        }
        var removed = MapCodec.ReadStringList(ref r, "monmap increment removals");
        r.EndStruct(s);
        return new MonMapIncrement(epoch, added, removed);
    }
}
