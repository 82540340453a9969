using System.Collections.Immutable;
using Appliance.Crush.Mapping;
using Appliance.Crush.Model;
using Appliance.Crush.Placement;
using Appliance.Wire.Codec;

namespace Appliance.Maps;

/// <summary>
/// One OSD as the monitors see it. <see cref="Address"/> is where clients reach it, <see cref="ClusterAddress"/> where
/// its peers replicate to and heartbeat it (the public address when it has no second network; both empty for an OSD
/// created but never booted). <see cref="Weight"/> is its CRUSH weight (16.16 fixed point, 1.0 = 1 TiB, as in
/// Ceph), mirrored in the CRUSH map. <see cref="UpFrom"/> is the epoch it was last marked up; <see cref="UpThru"/> the
/// epoch up to which it is known to have been up (raised by <c>OsdAlive</c> before it serves a PG interval, as Ceph's
/// up_thru: peering trusts an interval only if its primary's up_thru reached it). <see cref="DownStampMs"/> is when
/// it was marked down (Unix ms, 0 while up): the down→out timer runs from it, so a new leader continues it.
/// <see cref="AutoOut"/> tells that the monitors, not an administrator, marked it out, so it comes back in when it
/// boots again. <see cref="Uuid"/> is the uuid it was created with (`osd create`; empty for OSDs that only booted).
/// <see cref="Fullness"/> is how full its disk was at its last report, as the leader judged it against
/// mon_osd_nearfull_ratio and mon_osd_full_ratio: a primary refuses writes that add data to a PG with a full member.
/// </summary>
public sealed record OsdInfo(int Id, string Address, string Host, bool Up, bool In, uint Weight, uint UpFrom, long DownStampMs, bool AutoOut,
    string ClusterAddress = "", uint UpThru = 0, Guid Uuid = default, OsdFullness Fullness = OsdFullness.None)
{
    private const byte Version = 3;

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
        w.WriteString(ClusterAddress);
        w.WriteU32(UpThru);
        MapCodec.WriteGuid(w, Uuid);
        w.WriteU8((byte)Fullness);
        w.EndStruct(m);
    }

    /// <summary>One <see cref="OsdFullness"/> byte of osd.<paramref name="osd"/>; an unknown value is refused.</summary>
    internal static OsdFullness ReadFullness(ref WireReader r, int osd)
    {
        var fullness = r.ReadU8();
        return fullness <= (byte)OsdFullness.Full ? (OsdFullness)fullness : throw new WireFormatException($"osd.{osd} has an unknown fullness {fullness}");
    }

    internal static OsdInfo Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "osd entry");
        var info = new OsdInfo(r.ReadI32(), r.ReadString(MapCodec.MaxString), r.ReadString(MapCodec.MaxString), r.ReadBool(), r.ReadBool(),
            r.ReadU32(), r.ReadU32(), r.ReadI64(), r.ReadBool());
        // Version 1 had one address: the cluster address was the public one.
        info = s.Version >= 2
            ? info with { ClusterAddress = r.ReadString(MapCodec.MaxString), UpThru = r.ReadU32(), Uuid = MapCodec.ReadGuid(ref r) }
            : info with { ClusterAddress = info.Address };
        if (s.Version >= 3)
        {
            info = info with { Fullness = ReadFullness(ref r, info.Id) };
        }
        r.EndStruct(s);
        return info;
    }
}

/// <summary>How full an OSD's disk is, as the monitors flag it in the osdmap (Ceph's NEARFULL and FULL osd states).</summary>
public enum OsdFullness : byte
{
    None = 0,
    /// <summary>At or past mon_osd_nearfull_ratio: health warns.</summary>
    NearFull = 1,
    /// <summary>At or past mon_osd_full_ratio: PGs it is a member of refuse writes that add data.</summary>
    Full = 2,
}

/// <summary>How a pool keeps its data; the values are Ceph's pool type codes.</summary>
public enum PoolType : byte
{
    Replicated = 1,
    Erasure = 3,
}

/// <summary>An erasure-code profile: K data chunks and M coding chunks (Reed-Solomon).</summary>
public sealed record ErasureProfile(int K, int M);

/// <summary>Pool flags the monitors set.</summary>
[Flags]
public enum PoolFlags : uint
{
    None = 0,
    /// <summary>The pool's objects or bytes (summed from the OSDs' PG statistics) reached a quota: OSDs refuse writes
    /// that add data (Ceph's FLAG_FULL_QUOTA). Set and cleared by the leader.</summary>
    FullQuota = 1,
}

/// <summary>
/// A pool. <see cref="Size"/> is the number of copies (replicated) or K+M (erasure); writes need <see cref="MinSize"/>
/// members up. <see cref="PgNumAuto"/> says <see cref="PgNum"/> was sized by the monitors' automatic sizing
/// (MonOperations.AutoPgNum) rather than set by hand. <see cref="PgpNum"/> is how many of the PGs are spread by CRUSH
/// (the placement seed is the PG folded to pgp_num, as in Ceph; ≤ pg_num, and pg_num when not given). Quotas of 0 mean
/// none.
/// </summary>
public sealed record PoolInfo(
    int Id, string Name, PoolType Type, int Size, int MinSize, int PgNum, bool PgNumAuto, int CrushRule,
    ErasureProfile? Erasure, ulong QuotaMaxBytes, ulong QuotaMaxObjects, uint CreatedEpoch, int PgpNum = 0, PoolFlags Flags = PoolFlags.None)
{
    private const byte Version = 2;

    /// <summary>pgp_num; 0 given means pg_num.</summary>
    public int PgpNum { get; init; } = PgpNum > 0 ? PgpNum : PgNum;

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
        w.WriteI32(PgpNum);
        w.WriteU32((uint)Flags);
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
        if (s.Version >= 2)
        {
            var pgp = r.ReadI32();
            pool = pool with { PgpNum = pgp > 0 ? pgp : pgNum, Flags = (PoolFlags)r.ReadU32() };
        }
        r.EndStruct(s);
        if (pool.PgNum < 1 || pool.PgpNum > pool.PgNum)
        {
            throw new WireFormatException($"pool {name} has pg_num {pool.PgNum} and pgp_num {pool.PgpNum}");
        }
        return pool;
    }
}

/// <summary>
/// The OSD map: epoch, OSDs, pools, the CRUSH map, the PG overrides peering asks for (<see cref="PgTemp"/>,
/// <see cref="PrimaryTemp"/>), and the client blocklist. Immutable; <see cref="Apply"/> returns the next epoch's map.
/// Clients place objects with it: <see cref="ObjectToPg"/>, then <see cref="MapPg"/>.
/// </summary>
public sealed class OsdMap
{
    private const byte Version = 3;

    /// <summary>A hole in an erasure-coded PG's set (no OSD for that shard): CRUSH's ITEM_NONE.</summary>
    public const int NoOsd = CrushMapper.ItemNone;

    // Built on first use and shared by every MapPg of this epoch (the map is immutable).
    private readonly Lazy<CrushMapper> _mapper;
    private readonly Lazy<uint[]> _reweights;

    public OsdMap(uint epoch, Guid fsid, long modifiedMs, ImmutableSortedDictionary<int, OsdInfo> osds, ImmutableSortedDictionary<int, PoolInfo> pools,
        int poolMax, string failureDomain, string crushText, CrushMap? crush = null,
        ImmutableSortedDictionary<PgId, ImmutableArray<int>>? pgTemp = null, ImmutableSortedDictionary<PgId, int>? primaryTemp = null,
        ImmutableSortedDictionary<string, long>? blocklist = null, OsdMapFlags flags = OsdMapFlags.None)
    {
        Flags = flags;
        Epoch = epoch;
        Fsid = fsid;
        ModifiedMs = modifiedMs;
        Osds = osds;
        Pools = pools;
        PoolMax = poolMax;
        FailureDomain = failureDomain;
        CrushText = crushText;
        Crush = crush ?? CrushLayout.FromText(crushText);
        PgTemp = pgTemp ?? ImmutableSortedDictionary<PgId, ImmutableArray<int>>.Empty;
        PrimaryTemp = primaryTemp ?? ImmutableSortedDictionary<PgId, int>.Empty;
        Blocklist = blocklist ?? ImmutableSortedDictionary.Create<string, long>(StringComparer.Ordinal);
        _mapper = new Lazy<CrushMapper>(() => new CrushMapper(Crush));
        _reweights = new Lazy<uint[]>(Reweights);
    }

    public uint Epoch { get; }
    /// <summary>Cluster-wide flags an administrator sets (<see cref="OsdMapFlags.NoOut"/>).</summary>
    public OsdMapFlags Flags { get; }
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
    /// <summary>PG → the acting set peering asked for while the CRUSH set catches up (Ceph's pg_temp). Entries that
    /// name a pool, PG or OSD that no longer exists are dropped by <see cref="Apply"/>.</summary>
    public ImmutableSortedDictionary<PgId, ImmutableArray<int>> PgTemp { get; }
    /// <summary>PG → the OSD that acts as its primary instead of the acting set's first (Ceph's primary_temp).</summary>
    public ImmutableSortedDictionary<PgId, int> PrimaryTemp { get; }
    /// <summary>Client instance (<c>client.admin:12345</c>: entity, a colon, the process's nonce) → when the entry
    /// expires (Unix ms; the leader drops it at its first check after that). OSDs refuse every op from a listed
    /// instance from the epoch that lists it.</summary>
    public ImmutableSortedDictionary<string, long> Blocklist { get; }

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

    /// <summary>Whether <paramref name="instance"/> (<c>entity:nonce</c>) is blocklisted in this epoch.</summary>
    public bool IsBlocklisted(string instance) => Blocklist.ContainsKey(instance);

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

    /// <summary>The PG of object <paramref name="name"/> (in namespace <paramref name="nameSpace"/>) of pool
    /// <paramref name="poolId"/>: Ceph's stable_mod of the name's hash by pg_num.</summary>
    public PgId ObjectToPg(int poolId, string name, string? nameSpace = null)
    {
        var pool = Pools.GetValueOrDefault(poolId) ?? throw new ArgumentException($"pool {poolId} does not exist in osdmap epoch {Epoch}", nameof(poolId));
        return new PgId(poolId, PoolPlacement.PgOf(PoolPlacement.ObjectHash(name, nameSpace), (uint)pool.PgNum));
    }

    /// <summary>
    /// Where PG <paramref name="pg"/> lives in this epoch, as Ceph's OSDMap::pg_to_up_acting_osds computes it: the
    /// CRUSH result for its placement seed (the PG folded to pgp_num) with the pool's rule; the up set is that without
    /// OSDs that are down (a replicated pool closes the gaps, an erasure-coded one keeps each shard's position and
    /// leaves <see cref="NoOsd"/>); the acting set is <see cref="PgTemp"/>'s entry when there is one (down OSDs dropped
    /// the same way), else the up set; the primaries are the first OSD of each, unless <see cref="PrimaryTemp"/> names
    /// the acting primary.
    /// </summary>
    public PgMapping MapPg(PgId pg)
    {
        var pool = Pools.GetValueOrDefault(pg.Pool) ?? throw new ArgumentException($"pool {pg.Pool} does not exist in osdmap epoch {Epoch}", nameof(pg));
        if (pg.Seed >= (uint)pool.PgNum)
        {
            throw new ArgumentException($"pg {pg} does not exist: pool {pool.Name} has pg_num {pool.PgNum}", nameof(pg));
        }
        var erasure = pool.Type == PoolType.Erasure;
        var raw = new int[pool.Size];
        var mapper = _mapper.Value;
        var n = mapper.HasRule(pool.CrushRule)
            ? PoolPlacement.ActingSet(mapper, pool.CrushRule, pool.Id, pg.Seed, (uint)pool.PgpNum, pool.Size, _reweights.Value, raw, new CrushWorkspace(mapper))
            : 0;
        var up = OnlyUp(raw.AsSpan(0, n), erasure);
        var acting = PgTemp.TryGetValue(pg, out var temp) && OnlyUp(temp.AsSpan(), erasure) is { Length: > 0 } t && PoolPlacement.Primary(t) >= 0 ? t : up;
        var actingPrimary = PrimaryTemp.TryGetValue(pg, out var p) && FindOsd(p) is { Up: true } ? p : PoolPlacement.Primary(acting);
        return new PgMapping(pg, up, PoolPlacement.Primary(up), acting, actingPrimary);
    }

    private int[] OnlyUp(ReadOnlySpan<int> osds, bool keepPositions)
    {
        var list = new List<int>(osds.Length);
        foreach (var o in osds)
        {
            var up = o != NoOsd && FindOsd(o) is { Up: true };
            if (up)
            {
                list.Add(o);
            }
            else if (keepPositions)
            {
                list.Add(NoOsd);
            }
        }
        return [.. list];
    }

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
        var pgTemp = PgTemp.ToBuilder();
        foreach (var (pg, acting) in inc.NewPgTemp)
        {
            if (acting.Count == 0)
            {
                pgTemp.Remove(pg);
            }
            else
            {
                pgTemp[pg] = [.. acting];
            }
        }
        var primaryTemp = PrimaryTemp.ToBuilder();
        foreach (var (pg, osd) in inc.NewPrimaryTemp)
        {
            if (osd < 0)
            {
                primaryTemp.Remove(pg);
            }
            else
            {
                primaryTemp[pg] = osd;
            }
        }
        // Overrides that name a pool, a PG or an OSD that no longer exists go with it (every member and every
        // subscriber drops the same, so the maps stay equal byte for byte).
        bool Gone(PgId pg) => !pools.TryGetValue(pg.Pool, out var p) || pg.Seed >= (uint)p.PgNum;
        foreach (var (pg, acting) in pgTemp.ToList())
        {
            if (Gone(pg) || acting.Any(o => o != NoOsd && !osds.ContainsKey(o)))
            {
                pgTemp.Remove(pg);
            }
        }
        foreach (var (pg, osd) in primaryTemp.ToList())
        {
            if (Gone(pg) || !osds.ContainsKey(osd))
            {
                primaryTemp.Remove(pg);
            }
        }
        var blocklist = Blocklist.ToBuilder();
        foreach (var instance in inc.BlocklistRemovals)
        {
            blocklist.Remove(instance);
        }
        foreach (var (instance, expires) in inc.BlocklistAdds)
        {
            blocklist[instance] = expires;
        }
        return new OsdMap(inc.Epoch, Fsid, inc.ModifiedMs, osds.ToImmutable(), pools.ToImmutable(), inc.NewPoolMax ?? PoolMax, FailureDomain,
            inc.NewCrushText ?? CrushText, inc.NewCrushText is null ? Crush : null, pgTemp.ToImmutable(), primaryTemp.ToImmutable(), blocklist.ToImmutable(),
            inc.NewFlags ?? Flags);
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
        w.WriteU32((uint)PgTemp.Count);
        foreach (var (pg, acting) in PgTemp)
        {
            pg.Encode(w);
            MapCodec.WriteIntList(w, acting);
        }
        w.WriteU32((uint)PrimaryTemp.Count);
        foreach (var (pg, osd) in PrimaryTemp)
        {
            pg.Encode(w);
            w.WriteI32(osd);
        }
        w.WriteU32((uint)Blocklist.Count);
        foreach (var (instance, expires) in Blocklist)
        {
            w.WriteString(instance);
            w.WriteI64(expires);
        }
        w.WriteU32((uint)Flags);
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
        var pgTemp = ImmutableSortedDictionary.CreateBuilder<PgId, ImmutableArray<int>>();
        var primaryTemp = ImmutableSortedDictionary.CreateBuilder<PgId, int>();
        var blocklist = ImmutableSortedDictionary.CreateBuilder<string, long>(StringComparer.Ordinal);
        if (s.Version >= 2)
        {
            n = MapCodec.ReadCount(ref r, 12, "osdmap pg_temp");
            for (var i = 0; i < n; i++)
            {
                var pg = PgId.Decode(ref r);
                if (!pgTemp.TryAdd(pg, [.. MapCodec.ReadIntList(ref r, "osdmap pg_temp entry")]))
                {
                    throw new WireFormatException($"osdmap lists pg_temp of {pg} twice");
                }
            }
            n = MapCodec.ReadCount(ref r, 12, "osdmap primary_temp");
            for (var i = 0; i < n; i++)
            {
                var pg = PgId.Decode(ref r);
                if (!primaryTemp.TryAdd(pg, r.ReadI32()))
                {
                    throw new WireFormatException($"osdmap lists primary_temp of {pg} twice");
                }
            }
            n = MapCodec.ReadCount(ref r, 12, "osdmap blocklist");
            for (var i = 0; i < n; i++)
            {
                var instance = r.ReadString(MapCodec.MaxString);
                if (!blocklist.TryAdd(instance, r.ReadI64()))
                {
                    throw new WireFormatException($"osdmap lists {instance} in the blocklist twice");
                }
            }
        }
        var flags = s.Version >= 3 ? (OsdMapFlags)r.ReadU32() : OsdMapFlags.None;
        r.EndStruct(s);
        try
        {
            return new OsdMap(epoch, fsid, modified, osds.ToImmutable(), pools.ToImmutable(), poolMax, failureDomain, crushText, null,
                pgTemp.ToImmutable(), primaryTemp.ToImmutable(), blocklist.ToImmutable(), flags);
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

/// <summary>Cluster-wide flags of the osdmap (Ceph's CEPH_OSDMAP_*), set and cleared by `osd set|unset`.</summary>
[Flags]
public enum OsdMapFlags : uint
{
    None = 0,
    /// <summary>Down OSDs are not marked out (maintenance): their PGs stay where they are, degraded, instead of
    /// moving.</summary>
    NoOut = 1,
}

/// <summary>Where a PG lives in one epoch (see <see cref="OsdMap.MapPg"/>): the up set from CRUSH and the OSDs that
/// are up, the acting set that serves it (the up set unless peering asked for a pg_temp), and each one's primary (-1
/// when none).</summary>
public sealed record PgMapping(PgId Pg, IReadOnlyList<int> Up, int UpPrimary, IReadOnlyList<int> Acting, int ActingPrimary);

/// <summary>
/// The change from osdmap epoch E-1 to E: OSDs and pools added or changed (whole entries), removed by id, a new pool
/// id high-water mark and a new CRUSH map text when they changed; pg_temp entries set (an empty list clears one) and
/// primary_temp entries set (-1 clears one); blocklist entries added (with their expiry) and removed.
/// </summary>
public sealed record OsdMapIncrement(
    uint Epoch, long ModifiedMs, IReadOnlyList<OsdInfo> OsdUpserts, IReadOnlyList<int> OsdRemovals,
    IReadOnlyList<PoolInfo> PoolUpserts, IReadOnlyList<int> PoolRemovals, int? NewPoolMax, string? NewCrushText,
    IReadOnlyDictionary<PgId, IReadOnlyList<int>>? NewPgTemp = null, IReadOnlyDictionary<PgId, int>? NewPrimaryTemp = null,
    IReadOnlyDictionary<string, long>? BlocklistAdds = null, IReadOnlyList<string>? BlocklistRemovals = null)
{
    private const byte Version = 3;

    /// <summary>The cluster flags from this epoch on (null: unchanged).</summary>
    public OsdMapFlags? NewFlags { get; init; }

    public IReadOnlyDictionary<PgId, IReadOnlyList<int>> NewPgTemp { get; init; } = NewPgTemp ?? new Dictionary<PgId, IReadOnlyList<int>>();
    public IReadOnlyDictionary<PgId, int> NewPrimaryTemp { get; init; } = NewPrimaryTemp ?? new Dictionary<PgId, int>();
    public IReadOnlyDictionary<string, long> BlocklistAdds { get; init; } = BlocklistAdds ?? new Dictionary<string, long>();
    public IReadOnlyList<string> BlocklistRemovals { get; init; } = BlocklistRemovals ?? [];

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
        // In key order, so one increment has one encoding.
        w.WriteU32((uint)NewPgTemp.Count);
        foreach (var (pg, acting) in NewPgTemp.OrderBy(kv => kv.Key))
        {
            pg.Encode(w);
            MapCodec.WriteIntList(w, acting);
        }
        w.WriteU32((uint)NewPrimaryTemp.Count);
        foreach (var (pg, osd) in NewPrimaryTemp.OrderBy(kv => kv.Key))
        {
            pg.Encode(w);
            w.WriteI32(osd);
        }
        w.WriteU32((uint)BlocklistAdds.Count);
        foreach (var (instance, expires) in BlocklistAdds.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            w.WriteString(instance);
            w.WriteI64(expires);
        }
        MapCodec.WriteStringList(w, BlocklistRemovals);
        w.WriteBool(NewFlags is not null);
        w.WriteU32((uint)(NewFlags ?? OsdMapFlags.None));
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
        var pgTemp = new Dictionary<PgId, IReadOnlyList<int>>();
        var primaryTemp = new Dictionary<PgId, int>();
        var adds = new Dictionary<string, long>(StringComparer.Ordinal);
        List<string> removals = [];
        if (s.Version >= 2)
        {
            n = MapCodec.ReadCount(ref r, 12, "osdmap increment pg_temp");
            for (var i = 0; i < n; i++)
            {
                var pg = PgId.Decode(ref r);
                if (!pgTemp.TryAdd(pg, MapCodec.ReadIntList(ref r, "osdmap increment pg_temp entry")))
                {
                    throw new WireFormatException($"osdmap increment sets pg_temp of {pg} twice");
                }
            }
            n = MapCodec.ReadCount(ref r, 12, "osdmap increment primary_temp");
            for (var i = 0; i < n; i++)
            {
                var pg = PgId.Decode(ref r);
                if (!primaryTemp.TryAdd(pg, r.ReadI32()))
                {
                    throw new WireFormatException($"osdmap increment sets primary_temp of {pg} twice");
                }
            }
            n = MapCodec.ReadCount(ref r, 12, "osdmap increment blocklist");
            for (var i = 0; i < n; i++)
            {
                var instance = r.ReadString(MapCodec.MaxString);
                if (!adds.TryAdd(instance, r.ReadI64()))
                {
                    throw new WireFormatException($"osdmap increment blocklists {instance} twice");
                }
            }
            removals = MapCodec.ReadStringList(ref r, "osdmap increment blocklist removals");
        }
        OsdMapFlags? flags = null;
        if (s.Version >= 3)
        {
            var has = r.ReadBool();
            var value = (OsdMapFlags)r.ReadU32();
            flags = has ? value : null;
        }
        r.EndStruct(s);
        return new OsdMapIncrement(epoch, modified, osds, osdRemovals, pools, poolRemovals, poolMax, crush, pgTemp, primaryTemp, adds, removals) { NewFlags = flags };
    }
}
