using System.Collections.Immutable;
using Appliance.Crush.Model;
using Appliance.Wire.Codec;

namespace Appliance.Maps;

/// <summary>
/// One OSD as the monitors see it. <see cref="Weight"/> is its CRUSH weight (16.16 fixed point, 1.0 = 1 TiB, as in
/// Ceph), mirrored in the CRUSH map. <see cref="DownStampMs"/> is when it was marked down (Unix ms, 0 while up): the
/// down→out timer runs from it, so a new leader continues it. <see cref="AutoOut"/> tells that the monitors, not an
/// administrator, marked it out, so it comes back in when it boots again.
/// </summary>
public sealed record OsdInfo(int Id, string Address, string Host, bool Up, bool In, uint Weight, uint UpFrom, long DownStampMs, bool AutoOut)
{
    private const byte Version = 1;

    internal void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteI32(Id);
        w.WriteString(Address);
        w.WriteString(Host);
        w.WriteBool(Up);
        w.WriteBool(In);
        w.WriteU32(Weight);
        w.WriteU32(UpFrom);
        w.WriteI64(DownStampMs);
        w.WriteBool(AutoOut);
        w.EndStruct(m);
    }

    internal static OsdInfo Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "osd entry");
        var info = new OsdInfo(r.ReadI32(), r.ReadString(MapCodec.MaxString), r.ReadString(MapCodec.MaxString), r.ReadBool(), r.ReadBool(),
            r.ReadU32(), r.ReadU32(), r.ReadI64(), r.ReadBool());
        r.EndStruct(s);
        return info;
    }
}

/// <summary>How a pool keeps its data; the values are Ceph's pool type codes.</summary>
public enum PoolType : byte
{
    Replicated = 1,
    Erasure = 3,
}

/// <summary>An erasure-code profile: K data chunks and M coding chunks (Reed-Solomon).</summary>
public sealed record ErasureProfile(int K, int M);

/// <summary>
/// A pool. <see cref="Size"/> is the number of copies (replicated) or K+M (erasure); writes need <see cref="MinSize"/>
/// members up. <see cref="PgNumAuto"/> says <see cref="PgNum"/> was sized by the rule in
/// the monitors' automatic sizing (MonOperations.AutoPgNum) rather than set by hand. Quotas of 0 mean none.
/// </summary>
public sealed record PoolInfo(
    int Id, string Name, PoolType Type, int Size, int MinSize, int PgNum, bool PgNumAuto, int CrushRule,
    ErasureProfile? Erasure, ulong QuotaMaxBytes, ulong QuotaMaxObjects, uint CreatedEpoch)
{
    private const byte Version = 1;

    internal void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteI32(Id);
        w.WriteString(Name);
        w.WriteU8((byte)Type);
        w.WriteI32(Size);
        w.WriteI32(MinSize);
        w.WriteI32(PgNum);
        w.WriteBool(PgNumAuto);
        w.WriteI32(CrushRule);
        w.WriteBool(Erasure is not null);
        if (Erasure is not null)
        {
            w.WriteI32(Erasure.K);
            w.WriteI32(Erasure.M);
        }
        w.WriteU64(QuotaMaxBytes);
        w.WriteU64(QuotaMaxObjects);
        w.WriteU32(CreatedEpoch);
        w.EndStruct(m);
    }

    internal static PoolInfo Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "pool entry");
        var id = r.ReadI32();
        var name = r.ReadString(MapCodec.MaxString);
        var type = r.ReadU8() switch
        {
            1 => PoolType.Replicated,
            3 => PoolType.Erasure,
            var t => throw new WireFormatException($"pool {name} has unknown type {t}"),
        };
        var size = r.ReadI32();
        var minSize = r.ReadI32();
        var pgNum = r.ReadI32();
        var auto = r.ReadBool();
        var rule = r.ReadI32();
        ErasureProfile? ec = r.ReadBool() ? new ErasureProfile(r.ReadI32(), r.ReadI32()) : null;
        var pool = new PoolInfo(id, name, type, size, minSize, pgNum, auto, rule, ec, r.ReadU64(), r.ReadU64(), r.ReadU32());
        r.EndStruct(s);
        return pool;
    }
}

/// <summary>
/// The OSD map: epoch, OSDs, pools and the CRUSH map. Immutable; <see cref="Apply"/> returns the next epoch's map.
/// Clients place objects with it (pool → rule → <see cref="Crush"/> with <see cref="Reweights"/>).
/// </summary>
public sealed class OsdMap
{
    private const byte Version = 1;

    public OsdMap(uint epoch, Guid fsid, long modifiedMs, ImmutableSortedDictionary<int, OsdInfo> osds, ImmutableSortedDictionary<int, PoolInfo> pools,
        int poolMax, string failureDomain, string crushText, CrushMap? crush = null)
    {
        Epoch = epoch;
        Fsid = fsid;
        ModifiedMs = modifiedMs;
        Osds = osds;
        Pools = pools;
        PoolMax = poolMax;
        FailureDomain = failureDomain;
        CrushText = crushText;
        Crush = crush ?? CrushLayout.FromText(crushText);
    }

    public uint Epoch { get; }
    public Guid Fsid { get; }
    /// <summary>When this epoch was made, Unix milliseconds.</summary>
    public long ModifiedMs { get; }
    public ImmutableSortedDictionary<int, OsdInfo> Osds { get; }
    public ImmutableSortedDictionary<int, PoolInfo> Pools { get; }
    /// <summary>The largest pool id ever used (ids are never reused).</summary>
    public int PoolMax { get; }
    /// <summary>What replicas are kept apart by: "host" or "osd".</summary>
    public string FailureDomain { get; }
    /// <summary>The CRUSH map in Ceph's text format, as <see cref="Crush.Text.CrushMapWriter"/> writes it.</summary>
    public string CrushText { get; }
    public CrushMap Crush { get; }

    /// <summary>The map of a new cluster (epoch 1): no OSDs, no pools, the default CRUSH layout.</summary>
    public static OsdMap Create(Guid fsid, long nowMs, string failureDomain = "host")
    {
        var crush = CrushLayout.Default(failureDomain);
        return new OsdMap(1, fsid, nowMs, ImmutableSortedDictionary<int, OsdInfo>.Empty, ImmutableSortedDictionary<int, PoolInfo>.Empty,
            0, failureDomain, CrushLayout.ToText(crush), crush);
    }

    public PoolInfo? FindPool(string name) => Pools.Values.FirstOrDefault(p => p.Name == name);

    public OsdInfo? FindOsd(int id) => Osds.GetValueOrDefault(id);

    public int UpCount => Osds.Values.Count(o => o.Up);

    public int InCount => Osds.Values.Count(o => o.In);

    /// <summary>The CRUSH reweight vector: 0x10000 for an OSD that is in, 0 for out or unknown ids.</summary>
    public uint[] Reweights()
    {
        var length = Math.Max(Crush.MaxDevices, Osds.Count == 0 ? 0 : Osds.Keys.Max() + 1);
        var w = new uint[length];
        foreach (var osd in Osds.Values)
        {
            if (osd.In)
            {
                w[osd.Id] = 0x10000;
            }
        }
        return w;
    }

    /// <summary>A CRUSH weight for a disk of <paramref name="capacityBytes"/>: TiB in 16.16, at least 1/65536.</summary>
    public static uint WeightForCapacity(long capacityBytes) =>
        (uint)Math.Clamp((capacityBytes * 65536.0) / (1L << 40), 1, uint.MaxValue);

    public OsdMap Apply(OsdMapIncrement inc)
    {
        ArgumentNullException.ThrowIfNull(inc);
        if (inc.Epoch != Epoch + 1)
        {
            throw new MapSequenceException($"osdmap increment for epoch {inc.Epoch} applied to epoch {Epoch}");
        }
        var osds = Osds.ToBuilder();
        foreach (var id in inc.OsdRemovals)
        {
            if (!osds.Remove(id))
            {
                throw new MapSequenceException($"osdmap increment {inc.Epoch} removes unknown osd.{id}");
            }
        }
        foreach (var osd in inc.OsdUpserts)
        {
            osds[osd.Id] = osd;
        }
        var pools = Pools.ToBuilder();
        foreach (var id in inc.PoolRemovals)
        {
            if (!pools.Remove(id))
            {
                throw new MapSequenceException($"osdmap increment {inc.Epoch} removes unknown pool {id}");
            }
        }
        foreach (var pool in inc.PoolUpserts)
        {
            pools[pool.Id] = pool;
        }
        if (pools.Values.Select(p => p.Name).Distinct(StringComparer.Ordinal).Count() != pools.Count)
        {
            throw new MapSequenceException($"osdmap increment {inc.Epoch} gives two pools one name");
        }
        return new OsdMap(inc.Epoch, Fsid, inc.ModifiedMs, osds.ToImmutable(), pools.ToImmutable(), inc.NewPoolMax ?? PoolMax, FailureDomain,
            inc.NewCrushText ?? CrushText, inc.NewCrushText is null ? Crush : null);
    }

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteU32(Epoch);
        MapCodec.WriteGuid(w, Fsid);
        w.WriteI64(ModifiedMs);
        w.WriteU32((uint)Osds.Count);
        foreach (var osd in Osds.Values)
        {
            osd.Encode(w);
        }
        w.WriteU32((uint)Pools.Count);
        foreach (var pool in Pools.Values)
        {
            pool.Encode(w);
        }
        w.WriteI32(PoolMax);
        w.WriteString(FailureDomain);
        MapCodec.WriteLongString(w, CrushText);
        w.EndStruct(m);
    }

    public static OsdMap Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "osdmap");
        var epoch = r.ReadU32();
        var fsid = MapCodec.ReadGuid(ref r);
        var modified = r.ReadI64();
        var osds = ImmutableSortedDictionary.CreateBuilder<int, OsdInfo>();
        var n = MapCodec.ReadCount(ref r, 6, "osdmap osds");
        for (var i = 0; i < n; i++)
        {
            var osd = OsdInfo.Decode(ref r);
            if (!osds.TryAdd(osd.Id, osd))
            {
                throw new WireFormatException($"osdmap lists osd.{osd.Id} twice");
            }
        }
        var pools = ImmutableSortedDictionary.CreateBuilder<int, PoolInfo>();
        n = MapCodec.ReadCount(ref r, 6, "osdmap pools");
        for (var i = 0; i < n; i++)
        {
            var pool = PoolInfo.Decode(ref r);
            if (!pools.TryAdd(pool.Id, pool))
            {
                throw new WireFormatException($"osdmap lists pool {pool.Id} twice");
            }
        }
        var poolMax = r.ReadI32();
        var failureDomain = r.ReadString(MapCodec.MaxString);
        var crushText = MapCodec.ReadLongString(ref r, MapCodec.MaxCrushText);
        r.EndStruct(s);
        try
        {
            return new OsdMap(epoch, fsid, modified, osds.ToImmutable(), pools.ToImmutable(), poolMax, failureDomain, crushText);
        }
        catch (CrushMapException e)
        {
            throw new WireFormatException($"osdmap {epoch} carries a CRUSH map that does not compile: {e.Message}");
        }
    }

    public byte[] ToBytes() => MapCodec.ToBytes(Encode);

    public static OsdMap FromBytes(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var map = Decode(ref r);
        r.ExpectEnd("osdmap");
        return map;
    }
}

/// <summary>
/// The change from osdmap epoch E-1 to E: OSDs and pools added or changed (whole entries), removed by id, a new pool
/// id high-water mark and a new CRUSH map text when they changed.
/// </summary>
public sealed record OsdMapIncrement(
    uint Epoch, long ModifiedMs, IReadOnlyList<OsdInfo> OsdUpserts, IReadOnlyList<int> OsdRemovals,
    IReadOnlyList<PoolInfo> PoolUpserts, IReadOnlyList<int> PoolRemovals, int? NewPoolMax, string? NewCrushText)
{
    private const byte Version = 1;

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteU32(Epoch);
        w.WriteI64(ModifiedMs);
        w.WriteU32((uint)OsdUpserts.Count);
        foreach (var osd in OsdUpserts)
        {
            osd.Encode(w);
        }
        MapCodec.WriteIntList(w, OsdRemovals);
        w.WriteU32((uint)PoolUpserts.Count);
        foreach (var pool in PoolUpserts)
        {
            pool.Encode(w);
        }
        MapCodec.WriteIntList(w, PoolRemovals);
        w.WriteBool(NewPoolMax is not null);
        if (NewPoolMax is { } max)
        {
            w.WriteI32(max);
        }
        w.WriteBool(NewCrushText is not null);
        if (NewCrushText is not null)
        {
            MapCodec.WriteLongString(w, NewCrushText);
        }
        w.EndStruct(m);
    }

    public static OsdMapIncrement Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "osdmap increment");
        var epoch = r.ReadU32();
        var modified = r.ReadI64();
        var n = MapCodec.ReadCount(ref r, 6, "osdmap increment osds");
        var osds = new List<OsdInfo>(n);
        for (var i = 0; i < n; i++)
        {
            osds.Add(OsdInfo.Decode(ref r));
        }
        var osdRemovals = MapCodec.ReadIntList(ref r, "osdmap increment osd removals");
        n = MapCodec.ReadCount(ref r, 6, "osdmap increment pools");
        var pools = new List<PoolInfo>(n);
        for (var i = 0; i < n; i++)
        {
            pools.Add(PoolInfo.Decode(ref r));
        }
        var poolRemovals = MapCodec.ReadIntList(ref r, "osdmap increment pool removals");
        int? poolMax = r.ReadBool() ? r.ReadI32() : null;
        var crush = r.ReadBool() ? MapCodec.ReadLongString(ref r, MapCodec.MaxCrushText) : null;
        r.EndStruct(s);
        return new OsdMapIncrement(epoch, modified, osds, osdRemovals, pools, poolRemovals, poolMax, crush);
    }
}
