using Appliance.Maps;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Maps;

/// <summary>
/// Everything the monitors agree on: the monmap, the osdmap (with pools and CRUSH), the auth database, the central
/// configuration and the audit log. Immutable; the Paxos log carries <see cref="ClusterIncrement"/>s and every monitor
/// applies them in order with <see cref="Apply"/>, which is deterministic (it reads no clock and no randomness).
/// </summary>
public sealed class ClusterState
{
    private const byte Version = 1;

    public ClusterState(MonMap mon, OsdMap osd, AuthDb auth, ConfigDb config, AuditLog audit)
    {
        Mon = mon;
        Osd = osd;
        Auth = auth;
        Config = config;
        Audit = audit;
    }

    public MonMap Mon { get; }
    public OsdMap Osd { get; }
    public AuthDb Auth { get; }
    public ConfigDb Config { get; }
    public AuditLog Audit { get; }

    public Guid Fsid => Mon.Fsid;

    /// <summary>
    /// The state of a new cluster: monmap and osdmap at epoch 1 (no OSDs, no pools, the default CRUSH layout with
    /// <paramref name="failureDomain"/> "host" or "osd"), the given entities (e.g. client.admin with `mon allow *`),
    /// default configuration, an empty audit log.
    /// </summary>
    public static ClusterState Bootstrap(Guid fsid, IEnumerable<(string Name, string Address)> monitors, DateTimeOffset now,
        IEnumerable<AuthEntity>? entities = null, string failureDomain = "host")
    {
        var ms = now.ToUnixTimeMilliseconds();
        var auth = AuthDb.Empty;
        var list = entities?.ToList() ?? [];
        if (list.Count > 0)
        {
            foreach (var e in list)
            {
                if (MonOperations.ValidateEntity(e.Name, e.Caps) is { } error)
                {
                    throw new ArgumentException(error.Message, nameof(entities));
                }
            }
            auth = auth.Apply(new AuthIncrement(1, list, []));
        }
        var mons = MonMap.Create(fsid, monitors, ms);
        if (mons.Monitors.Count == 0)
        {
            throw new ArgumentException("a cluster needs at least one monitor", nameof(monitors));
        }
        return new ClusterState(mons, OsdMap.Create(fsid, ms, failureDomain), auth, ConfigDb.Empty, AuditLog.Empty);
    }

    /// <summary>Applies one committed increment. Throws <see cref="MapSequenceException"/> if it does not follow.</summary>
    public ClusterState Apply(ClusterIncrement inc)
    {
        ArgumentNullException.ThrowIfNull(inc);
        var config = inc.Config is null ? Config : Config.Apply(inc.Config);
        var audit = inc.Audit is null ? Audit : Audit.Apply(inc.Audit, (int)config.GetInt("mon_audit_log_max_entries"));
        return new ClusterState(
            inc.Mon is null ? Mon : Mon.Apply(inc.Mon),
            inc.Osd is null ? Osd : Osd.Apply(inc.Osd),
            inc.Auth is null ? Auth : Auth.Apply(inc.Auth),
            config,
            audit);
    }

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        Mon.Encode(w);
        Osd.Encode(w);
        Auth.Encode(w);
        Config.Encode(w);
        Audit.Encode(w);
        w.EndStruct(m);
    }

    public static ClusterState Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "cluster state");
        var state = new ClusterState(MonMap.Decode(ref r), OsdMap.Decode(ref r), AuthDb.Decode(ref r), ConfigDb.Decode(ref r), AuditLog.Decode(ref r));
        r.EndStruct(s);
        return state;
    }

    public byte[] ToBytes() => MapCodec.ToBytes(Encode);

    public static ClusterState FromBytes(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var state = Decode(ref r);
        r.ExpectEnd("cluster state");
        return state;
    }
}

/// <summary>
/// One committed change to the cluster state: the increments of the maps it touches (null for the others). This is
/// the value a monitor proposes through Paxos.
/// </summary>
public sealed record ClusterIncrement(
    MonMapIncrement? Mon = null, OsdMapIncrement? Osd = null, AuthIncrement? Auth = null, ConfigIncrement? Config = null, AuditIncrement? Audit = null)
{
    private const byte Version = 1;

    public bool IsEmpty => Mon is null && Osd is null && Auth is null && Config is null && (Audit is null || Audit.Entries.Count == 0);

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteBool(Mon is not null);
        Mon?.Encode(w);
        w.WriteBool(Osd is not null);
        Osd?.Encode(w);
        w.WriteBool(Auth is not null);
        Auth?.Encode(w);
        w.WriteBool(Config is not null);
        Config?.Encode(w);
        w.WriteBool(Audit is not null);
        Audit?.Encode(w);
        w.EndStruct(m);
    }

    public static ClusterIncrement Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "cluster increment");
        var mon = r.ReadBool() ? MonMapIncrement.Decode(ref r) : null;
        var osd = r.ReadBool() ? OsdMapIncrement.Decode(ref r) : null;
        var auth = r.ReadBool() ? AuthIncrement.Decode(ref r) : null;
        var config = r.ReadBool() ? ConfigIncrement.Decode(ref r) : null;
        var audit = r.ReadBool() ? AuditIncrement.Decode(ref r) : null;
        r.EndStruct(s);
        return new ClusterIncrement(mon, osd, auth, config, audit);
    }

    public byte[] ToBytes() => MapCodec.ToBytes(Encode);

    public static ClusterIncrement FromBytes(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var inc = Decode(ref r);
        r.ExpectEnd("cluster increment");
        return inc;
    }
}
