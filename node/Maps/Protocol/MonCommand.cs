using System.Globalization;
using Appliance.Wire.Auth;
using Appliance.Wire.Codec;

namespace Appliance.Maps.Protocol;

/// <summary>
/// A command to the monitors. The monitors (node/Monitor's MonOperations.Execute) turn it into a change of the maps
/// or a <see cref="MonError"/>. <see cref="Describe"/> is the audit text (never a secret).
/// </summary>
public abstract record MonCommand
{
    public abstract string Describe();

    /// <summary>True for the changes people make (audited); false for what OSDs tell the monitors.</summary>
    public virtual bool IsAdministrative => true;

    private protected static string CapsText(IReadOnlyDictionary<string, string> caps) =>
        string.Join(" ", caps.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} '{kv.Value}'"));

    private protected static string IdsText(IEnumerable<int> ids) => string.Join(" ", ids.Select(i => i.ToString(CultureInfo.InvariantCulture)));
}

/// <summary>`pool create NAME [replicated|erasure] [size] [min_size] [pg_num] [rule] [k m] [quotas]`. Unset values take
/// the configured defaults; pg_num unset is chosen automatically.</summary>
public sealed record PoolCreate(
    string Name, PoolType Type = PoolType.Replicated, int? Size = null, int? MinSize = null, int? PgNum = null, string? Rule = null,
    int? K = null, int? M = null, ulong QuotaMaxBytes = 0, ulong QuotaMaxObjects = 0) : MonCommand
{
    public override string Describe() =>
        $"pool create {Name} {(Type == PoolType.Erasure ? "erasure" : "replicated")}"
        + Opt("size", Size) + Opt("min_size", MinSize) + Opt("pg_num", PgNum) + Opt("k", K) + Opt("m", M)
        + (Rule is null ? "" : $" rule={Rule}")
        + (QuotaMaxBytes == 0 ? "" : $" quota_max_bytes={QuotaMaxBytes}") + (QuotaMaxObjects == 0 ? "" : $" quota_max_objects={QuotaMaxObjects}");

    private static string Opt(string name, int? v) => v is null ? "" : $" {name}={v.Value.ToString(CultureInfo.InvariantCulture)}";
}

public sealed record PoolRemove(string Name) : MonCommand
{
    public override string Describe() => $"pool rm {Name}";
}

/// <summary>`pool set NAME FIELD VALUE` for size, min_size, pg_num (a number or "auto"), quota_max_bytes (with K/M/G/T
/// suffixes), quota_max_objects.</summary>
public sealed record PoolSet(string Name, string Field, string Value) : MonCommand
{
    public override string Describe() => $"pool set {Name} {Field} {Value}";
}

/// <summary>An OSD starts: it registers its public address (clients), its cluster address (its peers; null: the public
/// one), its host and its uuid (checked against the one it was created with, when both are known) and is marked up.
/// <see cref="Weight"/> is its CRUSH weight (16.16, see <see cref="OsdMap.WeightForCapacity"/>).</summary>
public sealed record OsdBoot(int Id, string Address, string Host, uint Weight, string? ClusterAddress = null, Guid Uuid = default) : MonCommand
{
    public override string Describe() =>
        $"osd boot osd.{Id} {Address}{(ClusterAddress is null || ClusterAddress == Address ? "" : $" cluster {ClusterAddress}")} host={Host}";

    public override bool IsAdministrative => false;
}

/// <summary>OSD <see cref="Id"/> needs the map to say it was up through epoch <see cref="WantUpThru"/> before it
/// serves the PGs of that interval (Ceph's MOSDAlive): the monitors set its up_thru to the next epoch unless it is
/// already at least that.</summary>
public sealed record OsdAlive(int Id, uint WantUpThru) : MonCommand
{
    public override string Describe() => $"osd alive osd.{Id} want up_thru {WantUpThru}";

    public override bool IsAdministrative => false;
}

/// <summary>One PG's override in a <see cref="PgTemp"/>: <see cref="Acting"/> becomes its pg_temp (empty: cleared),
/// <see cref="Primary"/> its primary_temp (-1: cleared).</summary>
public sealed record PgTempChange(PgId Pg, IReadOnlyList<int> Acting, int Primary = -1);

/// <summary>Peering's request from OSD <see cref="From"/> (a PG's primary) to set or clear the acting sets and primaries
/// of some PGs while their CRUSH sets catch up (Ceph's MOSDPGTemp).</summary>
public sealed record PgTemp(int From, IReadOnlyList<PgTempChange> Changes) : MonCommand
{
    public override string Describe() =>
        $"pg_temp from osd.{From}: " + string.Join(", ", Changes.Select(c =>
            $"{c.Pg} [{string.Join(",", c.Acting)}]{(c.Primary >= 0 ? $" primary {c.Primary.ToString(CultureInfo.InvariantCulture)}" : "")}"));

    public override bool IsAdministrative => false;
}

/// <summary>`osd blocklist add INSTANCE [SECONDS]`: OSDs refuse every op of client instance
/// <see cref="Instance"/> (<c>client.vm:4711</c>: entity, a colon, its per-process nonce) from the epoch that lists
/// it, until it expires (0 seconds: mon_osd_blocklist_default_expire). Adding a listed instance again sets its
/// expiry anew.</summary>
public sealed record OsdBlocklistAdd(string Instance, long ExpireSeconds = 0) : MonCommand
{
    public override string Describe() =>
        $"osd blocklist add {Instance}{(ExpireSeconds > 0 ? $" {ExpireSeconds.ToString(CultureInfo.InvariantCulture)}" : "")}";
}

public sealed record OsdBlocklistRemove(string Instance) : MonCommand
{
    public override string Describe() => $"osd blocklist rm {Instance}";
}

/// <summary>`osd create [ID] --uuid UUID`: a new OSD id (the lowest free one, or <see cref="Id"/>) and entity
/// <c>osd.N</c> with <see cref="Key"/> (the caller generates it; the operation itself is pure) and the caps an OSD
/// needs. Idempotent on the uuid: the same uuid with the same key answers the id it already has (a retry), with
/// another key it is refused. The reply's <see cref="MonReply.Data"/> is the id (<see cref="ParseCreatedId"/>).</summary>
public sealed record OsdCreate(Guid Uuid, Secret Key, int? Id = null) : MonCommand
{
    public override string Describe() => $"osd create{(Id is { } id ? $" {id.ToString(CultureInfo.InvariantCulture)}" : "")} uuid {Uuid}";

    /// <summary>The caps every OSD gets: it reports to and reads from the monitors, and its peers accept its ops.</summary>
    public static IReadOnlyDictionary<string, string> OsdCaps { get; } = new Dictionary<string, string> { ["mon"] = "allow rx", ["osd"] = "allow *" };

    /// <summary>The id an <see cref="OsdCreate"/> answered (its reply's data: 4 bytes, little-endian).</summary>
    public static int ParseCreatedId(MonReply reply)
    {
        ArgumentNullException.ThrowIfNull(reply);
        if (reply is not { Status: MonReplyStatus.Ok, Data: { Length: 4 } data })
        {
            throw new WireFormatException($"osd create was not answered with an id: {reply.Status}: {reply.Message}");
        }
        return System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(data);
    }
}

/// <summary>The leader's own: sets or clears pools' <see cref="PoolFlags.FullQuota"/> (pool id → full) from the sums of
/// the PG statistics it holds.</summary>
public sealed record PoolQuotaFlags(IReadOnlyDictionary<int, bool> Full) : MonCommand
{
    public override string Describe() =>
        "pool quota flags " + string.Join(", ", Full.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key.ToString(CultureInfo.InvariantCulture)}={(kv.Value ? "full" : "ok")}"));

    public override bool IsAdministrative => false;
}

/// <summary>The leader's own: sets OSDs' <see cref="OsdFullness"/> (osd id → fullness) from the disk use they
/// report.</summary>
public sealed record OsdFullFlags(IReadOnlyDictionary<int, OsdFullness> Fullness) : MonCommand
{
    public override string Describe() =>
        "osd full flags " + string.Join(", ", Fullness.OrderBy(kv => kv.Key).Select(kv => $"osd.{kv.Key.ToString(CultureInfo.InvariantCulture)}={kv.Value.ToString().ToLowerInvariant()}"));

    public override bool IsAdministrative => false;
}

/// <summary>An OSD's periodic "I am alive" to the monitors.</summary>
public sealed record OsdBeacon(int Id) : MonCommand
{
    public override string Describe() => $"osd beacon osd.{Id}";

    public override bool IsAdministrative => false;
}

/// <summary><see cref="Reporter"/> missed <see cref="Target"/>'s heartbeats for longer than the grace; or, with
/// <see cref="Immediate"/>, its connection to the target was refused or reset (the target's process is gone): then the
/// target is marked down at once, without waiting for reports from other hosts (as Ceph's immediate failure).</summary>
public sealed record OsdFailureReport(int Target, int Reporter, bool Immediate = false) : MonCommand
{
    public override string Describe() => $"osd failure osd.{Target} reported by osd.{Reporter}{(Immediate ? " (connection refused)" : "")}";

    public override bool IsAdministrative => false;
}

/// <summary><see cref="Reporter"/> hears <see cref="Target"/> again: its report is withdrawn.</summary>
public sealed record OsdFailureCancel(int Target, int Reporter) : MonCommand
{
    public override string Describe() => $"osd failure cancel osd.{Target} by osd.{Reporter}";

    public override bool IsAdministrative => false;
}

/// <summary>The leader's periodic check: OSDs whose beacons stopped go down, OSDs down long enough go out.</summary>
public sealed record OsdTick : MonCommand
{
    public override string Describe() => "osd tick";

    public override bool IsAdministrative => false;
}

/// <summary>The leader's rotation of a ticket service's secret: <see cref="Key"/> becomes the service's newest key
/// when its current one is older than the rotation interval (30 min) (else nothing changes), and keys past their
/// expiry are dropped. The leader generates the key (the operation itself is pure); it is never described.</summary>
public sealed record ServiceKeyRotate(string Service, Secret Key) : MonCommand
{
    public override string Describe() => $"rotate the {Service} service key";

    public override bool IsAdministrative => false;
}

public sealed record OsdOut(IReadOnlyList<int> Ids) : MonCommand
{
    public override string Describe() => $"osd out {IdsText(Ids)}";
}

public sealed record OsdIn(IReadOnlyList<int> Ids) : MonCommand
{
    public override string Describe() => $"osd in {IdsText(Ids)}";
}

/// <summary>`osd set FLAG` / `osd unset FLAG`: a cluster flag of the osdmap (<c>noout</c>).</summary>
public sealed record OsdSetFlag(string Flag, bool Set) : MonCommand
{
    public override string Describe() => $"osd {(Set ? "set" : "unset")} {Flag}";
}

/// <summary>`osd rm IDS`: OSDs leave the cluster (osdmap, CRUSH and their auth entity); refused while one is up, in,
/// or named by a PG's placement.</summary>
public sealed record OsdRemove(IReadOnlyList<int> Ids) : MonCommand
{
    public override string Describe() => $"osd rm {IdsText(Ids)}";
}

/// <summary>`auth add ENTITY caps...`; the CLI generates <see cref="Key"/> (the operation itself is pure).</summary>
public sealed record AuthAdd(string Entity, IReadOnlyDictionary<string, string> Caps, Secret Key) : MonCommand
{
    public override string Describe() => $"auth add {Entity} {CapsText(Caps)}".TrimEnd();
}

public sealed record AuthCaps(string Entity, IReadOnlyDictionary<string, string> Caps) : MonCommand
{
    public override string Describe() => $"auth caps {Entity} {CapsText(Caps)}".TrimEnd();
}

public sealed record AuthRemove(string Entity) : MonCommand
{
    public override string Describe() => $"auth rm {Entity}";
}

public sealed record ConfigSet(string Name, string Value) : MonCommand
{
    public override string Describe() => $"config set {Name} {Value}";
}

/// <summary>Resets an option to its default.</summary>
public sealed record ConfigRemove(string Name) : MonCommand
{
    public override string Describe() => $"config rm {Name}";
}

public sealed record MonAdd(string Name, string Address) : MonCommand
{
    public override string Describe() => $"mon add {Name} {Address}";
}

public sealed record MonRemove(string Name) : MonCommand
{
    public override string Describe() => $"mon rm {Name}";
}

/// <summary>
/// `join-token NAME`: a one-use token for node <see cref="Node"/> to join, good for <see cref="TtlSeconds"/>. The
/// monitors record it as entity <c>client.join.NAME</c> with <see cref="Key"/> (the token's secret: the joining
/// node authenticates with it, so a forged token is refused at the handshake) and an expiry (the proposer's clock
/// plus the TTL). Creating a token again for the same node replaces it. Expired tokens are dropped then too.
/// </summary>
public sealed record JoinTokenCreate(string Node, Secret Key, long TtlSeconds) : MonCommand
{
    /// <summary>The entity a token for <paramref name="node"/> authenticates as.</summary>
    public static string EntityOf(string node) => "client.join." + node;

    /// <summary>The entity a joined node's own key is.</summary>
    public static string NodeEntityOf(string node) => "client.node." + node;

    public override string Describe() => $"join-token {Node} ttl {TtlSeconds.ToString(CultureInfo.InvariantCulture)} s";
}

/// <summary>
/// A joining node spends its token (it is authenticated as <c>client.join.NODE</c>, and only that entity may send
/// this): refused when the token expired or was used; else the token is marked used and entity
/// <c>client.node.NODE</c> is made with <see cref="NodeKey"/>. The reply's data is the keyring text the node needs
/// (the monitors' shared key and client.admin's).
/// </summary>
public sealed record JoinConsume(string Node, Secret NodeKey) : MonCommand
{
    public override string Describe() => $"join {Node}";
}
