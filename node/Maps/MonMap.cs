using Appliance.Wire.Codec;

namespace Appliance.Maps;

/// <summary>One monitor: its name, messenger address (host:port), rank (its index in name order, for people) and id
/// (its Paxos member id: given when it joins, never changed and never reused; 0 in maps written before ids existed,
/// where the map assigns rank + 1).</summary>
public sealed record MonInfo(string Name, string Address, int Rank, int Id = 0)
{
    internal void Encode(WireWriter w)
    {
        var m = w.BeginStruct(2, 1);
        w.WriteString(Name);
        w.WriteString(Address);
        w.WriteI32(Rank);
        w.WriteI32(Id);
        w.EndStruct(m);
    }

    internal static MonInfo Decode(ref WireReader r)
    {
        var s = r.BeginStruct(2, "monitor entry");
        var info = new MonInfo(r.ReadString(MapCodec.MaxString), r.ReadString(MapCodec.MaxString), r.ReadI32());
        if (s.Version >= 2)
        {
            info = info with { Id = r.ReadI32() };
        }
        r.EndStruct(s);
        return info;
    }
}

/// <summary>
/// The monitor map: which monitors form the cluster <see cref="Fsid"/>. Immutable; <see cref="Apply"/> returns the
/// next epoch's map. Ranks are recomputed from the names after every change, so every monitor derives the same ranks;
/// ids stay with their monitor, and <see cref="NextId"/> only grows, so an id is never given twice.
/// </summary>
public sealed class MonMap
{
    private const byte Version = 2;

    public MonMap(uint epoch, Guid fsid, long createdMs, IEnumerable<MonInfo> monitors, int nextId = 0)
    {
        Epoch = epoch;
        Fsid = fsid;
        CreatedMs = createdMs;
        Monitors = [.. monitors.OrderBy(m => m.Name, StringComparer.Ordinal).Select((m, i) => m with { Rank = i, Id = m.Id > 0 ? m.Id : i + 1 })];
        if (Monitors.Select(m => m.Id).Distinct().Count() != Monitors.Count)
        {
            throw new ArgumentException("two monitors share an id", nameof(monitors));
        }
        NextId = Math.Max(nextId, Monitors.Count == 0 ? 1 : Monitors.Max(m => m.Id) + 1);
    }

    /// <summary>The id the next monitor added gets.</summary>
    public int NextId { get; }

    public MonInfo? FindById(int id) => Monitors.FirstOrDefault(m => m.Id == id);

    public uint Epoch { get; }
    public Guid Fsid { get; }
    /// <summary>When the cluster was created, Unix milliseconds.</summary>
    public long CreatedMs { get; }
    /// <summary>In rank order.</summary>
    public IReadOnlyList<MonInfo> Monitors { get; }

    public MonInfo? Find(string name) => Monitors.FirstOrDefault(m => m.Name == name);

    /// <summary>The first monmap (epoch 1) of a new cluster; ids 1, 2, ... in the order given.</summary>
    public static MonMap Create(Guid fsid, IEnumerable<(string Name, string Address)> monitors, long nowMs) =>
        new(1, fsid, nowMs, monitors.Select((m, i) => new MonInfo(m.Name, m.Address, 0, i + 1)));

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
        var nextId = NextId;
        foreach (var added in inc.Added)
        {
            if (kept.Any(m => m.Name == added.Name))
            {
                throw new MapSequenceException($"monmap increment {inc.Epoch} adds existing monitor {added.Name}");
            }
            if (added.Id < NextId)
            {
                throw new MapSequenceException($"monmap increment {inc.Epoch} gives monitor {added.Name} id {added.Id}, below the next free id {NextId}");
            }
            kept.Add(added);
            nextId = Math.Max(nextId, added.Id + 1);
        }
        return new MonMap(inc.Epoch, Fsid, CreatedMs, kept, nextId);
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
        w.WriteI32(NextId);
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
        var nextId = s.Version >= 2 ? r.ReadI32() : 0;
        r.EndStruct(s);
        if (mons.Select(m => m.Name).Distinct(StringComparer.Ordinal).Count() != mons.Count)
        {
            throw new WireFormatException("monmap lists a monitor twice");
        }
        if (mons.Any(m => m.Id < 0) || mons.Where(m => m.Id > 0).Select(m => m.Id).Distinct().Count() != mons.Count(m => m.Id > 0))
        {
            throw new WireFormatException("monmap gives two monitors one id (or a negative one)");
        }
        try
        {
            return new MonMap(epoch, fsid, created, mons, nextId);
        }
        catch (ArgumentException e)
        {
            throw new WireFormatException($"monmap: {e.Message}");
        }
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
