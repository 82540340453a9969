using System.Globalization;
using Appliance.Wire.Auth;

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

/// <summary>An OSD starts: it registers its address and host and is marked up. <see cref="Weight"/> is its CRUSH weight
/// (16.16, see <see cref="OsdMap.WeightForCapacity"/>).</summary>
public sealed record OsdBoot(int Id, string Address, string Host, uint Weight) : MonCommand
{
    public override string Describe() => $"osd boot osd.{Id} {Address} host={Host}";

    public override bool IsAdministrative => false;
}

/// <summary>An OSD's periodic "I am alive" to the monitors.</summary>
public sealed record OsdBeacon(int Id) : MonCommand
{
    public override string Describe() => $"osd beacon osd.{Id}";

    public override bool IsAdministrative => false;
}

/// <summary><see cref="Reporter"/> missed <see cref="Target"/>'s heartbeats for longer than the grace.</summary>
public sealed record OsdFailureReport(int Target, int Reporter) : MonCommand
{
    public override string Describe() => $"osd failure osd.{Target} reported by osd.{Reporter}";

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
