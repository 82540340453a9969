using System.Collections.Immutable;
using Appliance.Maps;
using Appliance.Wire.Auth;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Maps;

/// <summary>One entity of the auth database: its name (<c>client.admin</c>, <c>osd.3</c>), secret and capabilities per
/// service (<c>mon</c> → <c>allow *</c>), in Ceph's syntax, validated by <see cref="ServiceCaps.Parse"/>.
/// <see cref="ExpiresMs"/> (unix ms; 0 never) is set on join tokens only: past it the entity may do nothing.</summary>
public sealed record AuthEntity(string Name, Secret Key, ImmutableSortedDictionary<string, string> Caps, long ExpiresMs = 0)
{
    private const byte Version = 2;

    /// <summary>Whether the entity has expired at <paramref name="nowMs"/>.</summary>
    public bool ExpiredAt(long nowMs) => ExpiresMs != 0 && nowMs >= ExpiresMs;

    /// <summary>The services a capability may name.</summary>
    public static IReadOnlyList<string> Services { get; } = ["mon", "osd", "mgr"];

    /// <summary>The entry the messenger's keyring and authorizer use.</summary>
    public KeyringEntry ToKeyringEntry() => new(Name, Key, Caps);

    /// <summary>The capabilities parsed, once per entity object (every request's authorization asks; entities are
    /// immutable, so a parse is good for the object's life). Kept outside the record so equality is unchanged.</summary>
    public EntityCaps ParsedCaps() => Parsed.GetValue(this, static e => new EntityCaps(e.Caps));

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<AuthEntity, EntityCaps> Parsed = new();

    internal void Encode(WireWriter w)
    {
        // A monitor that knows no expiry would keep an expired token usable: an entity with one needs version 2.
        var m = w.BeginStruct(Version, ExpiresMs != 0 ? (byte)2 : (byte)1);
        w.WriteString(Name);
        MapCodec.WriteSecret(w, Key);
        w.WriteU32((uint)Caps.Count);
        foreach (var (service, caps) in Caps)
        {
            w.WriteString(service);
            w.WriteString(caps);
        }
        w.WriteI64(ExpiresMs);
        w.EndStruct(m);
    }

    internal static AuthEntity Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "auth entity");
        var name = r.ReadString(MapCodec.MaxString);
        var key = MapCodec.ReadSecret(ref r, $"auth entity {name}");
        var n = MapCodec.ReadCount(ref r, 8, "auth entity caps");
        var caps = ImmutableSortedDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < n; i++)
        {
            var service = r.ReadString(MapCodec.MaxString);
            if (!caps.TryAdd(service, r.ReadString(MapCodec.MaxString)))
            {
                throw new WireFormatException($"auth entity {name} lists caps for {service} twice");
            }
        }
        var expires = s.Version >= 2 ? r.ReadI64() : 0;
        r.EndStruct(s);
        return new AuthEntity(name, key, caps.ToImmutable(), expires);
    }
}

/// <summary>
/// The auth database: every entity that may talk to the cluster — the source of truth for the messenger's
/// authentication. Immutable; <see cref="Apply"/> returns the next version.
/// </summary>
public sealed class AuthDb
{
    private const byte Version = 2;

    public AuthDb(ulong version, ImmutableSortedDictionary<string, AuthEntity> entities,
        ImmutableSortedDictionary<string, ImmutableList<ServiceKey>>? serviceKeys = null)
    {
        MapVersion = version;
        Entities = entities;
        ServiceKeys = serviceKeys ?? NoServiceKeys;
    }

    private static readonly ImmutableSortedDictionary<string, ImmutableList<ServiceKey>> NoServiceKeys =
        ImmutableSortedDictionary.Create<string, ImmutableList<ServiceKey>>(StringComparer.Ordinal);

    public static AuthDb Empty { get; } = new(0, ImmutableSortedDictionary.Create<string, AuthEntity>(StringComparer.Ordinal));

    /// <summary>The services the monitors issue tickets for (their daemons hold no client keys).</summary>
    public static IReadOnlyList<string> TicketServices { get; } = ["osd", "mgr"];

    /// <summary>How long a ticket is good for.</summary>
    public static TimeSpan TicketTtl { get; } = TimeSpan.FromHours(1);

    /// <summary>A service key older than this is replaced (the leader proposes a new one): tickets are sealed with a
    /// key at most this old...</summary>
    public static TimeSpan RotateAfter { get; } = TicketTtl / 2;

    /// <summary>...and a key lives this long, so every ticket sealed with it expires before it does.</summary>
    public static TimeSpan KeyLifetime { get; } = TicketTtl * 2;

    /// <summary>Each ticket service's rotating secrets, oldest first; the newest seals new tickets, and a service's
    /// daemons accept tickets sealed with any listed one (rotations never break tickets handed out).</summary>
    public ImmutableSortedDictionary<string, ImmutableList<ServiceKey>> ServiceKeys { get; }

    /// <summary>The newest key of a service, if it has one.</summary>
    public ServiceKey? NewestKey(string service) => ServiceKeys.TryGetValue(service, out var keys) && keys.Count > 0 ? keys[^1] : null;

    /// <summary>Whether the service's newest key is missing or old enough to be replaced at <paramref name="nowMs"/>.</summary>
    public bool NeedsRotation(string service, long nowMs) =>
        NewestKey(service) is not { } k || k.ExpiresMs - (long)KeyLifetime.TotalMilliseconds + (long)RotateAfter.TotalMilliseconds <= nowMs;

    /// <summary>The service's keys as the messenger's ticket code takes them.</summary>
    public ServiceSecrets SecretsOf(string service)
    {
        var secrets = new ServiceSecrets(service);
        foreach (var k in ServiceKeys.GetValueOrDefault(service) ?? [])
        {
            secrets.Add(new ServiceSecret(k.Id, k.Key, DateTimeOffset.FromUnixTimeMilliseconds(k.ExpiresMs)));
        }
        return secrets;
    }

    /// <summary>Increases by one with every change (the auth "epoch").</summary>
    public ulong MapVersion { get; }
    public ImmutableSortedDictionary<string, AuthEntity> Entities { get; }

    public AuthEntity? Find(string name) => Entities.GetValueOrDefault(name);

    /// <summary>The whole database as a keyring (for the messenger, or `auth export`).</summary>
    public Keyring ToKeyring()
    {
        var ring = new Keyring();
        foreach (var e in Entities.Values)
        {
            ring.Add(e.ToKeyringEntry());
        }
        return ring;
    }

    public AuthDb Apply(AuthIncrement inc)
    {
        ArgumentNullException.ThrowIfNull(inc);
        if (inc.MapVersion != MapVersion + 1)
        {
            throw new MapSequenceException($"auth increment {inc.MapVersion} applied to version {MapVersion}");
        }
        var b = Entities.ToBuilder();
        foreach (var name in inc.Removals)
        {
            if (!b.Remove(name))
            {
                throw new MapSequenceException($"auth increment {inc.MapVersion} removes unknown entity {name}");
            }
        }
        foreach (var e in inc.Upserts)
        {
            b[e.Name] = e;
        }
        var keys = ServiceKeys;
        foreach (var (service, list) in inc.ServiceKeys)
        {
            keys = keys.SetItem(service, list);
        }
        return new AuthDb(inc.MapVersion, b.ToImmutable(), keys);
    }

    public void Encode(WireWriter w)
    {
        // A monitor that does not know service keys would drop them: a database holding some needs version 2.
        var m = w.BeginStruct(Version, ServiceKeys.Count > 0 ? (byte)2 : (byte)1);
        w.WriteU64(MapVersion);
        w.WriteU32((uint)Entities.Count);
        foreach (var e in Entities.Values)
        {
            e.Encode(w);
        }
        ServiceKey.EncodeMap(w, ServiceKeys);
        w.EndStruct(m);
    }

    public static AuthDb Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "auth database");
        var version = r.ReadU64();
        var n = MapCodec.ReadCount(ref r, 6, "auth entities");
        var b = ImmutableSortedDictionary.CreateBuilder<string, AuthEntity>(StringComparer.Ordinal);
        for (var i = 0; i < n; i++)
        {
            var e = AuthEntity.Decode(ref r);
            if (!b.TryAdd(e.Name, e))
            {
                throw new WireFormatException($"auth database lists {e.Name} twice");
            }
        }
        // Version 1 had no service keys.
        var keys = s.Version >= 2 ? ServiceKey.DecodeMap(ref r) : null;
        r.EndStruct(s);
        return new AuthDb(version, b.ToImmutable(), keys);
    }

    public byte[] ToBytes() => MapCodec.ToBytes(Encode);

    public static AuthDb FromBytes(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var db = Decode(ref r);
        r.ExpectEnd("auth database");
        return db;
    }
}

/// <summary>The change from auth version V-1 to V: entities added or replaced whole, and removed; and services whose
/// key list is replaced whole (a rotation).</summary>
public sealed record AuthIncrement(ulong MapVersion, IReadOnlyList<AuthEntity> Upserts, IReadOnlyList<string> Removals)
{
    private const byte Version = 2;

    /// <summary>Services whose rotating keys change, with their whole new list (version 2).</summary>
    public IReadOnlyDictionary<string, ImmutableList<ServiceKey>> ServiceKeys { get; init; } =
        ImmutableSortedDictionary<string, ImmutableList<ServiceKey>>.Empty;

    public void Encode(WireWriter w)
    {
        // A monitor that cannot apply a key change must not skip it silently: such increments need version 2.
        var m = w.BeginStruct(Version, ServiceKeys.Count > 0 ? (byte)2 : (byte)1);
        w.WriteU64(MapVersion);
        w.WriteU32((uint)Upserts.Count);
        foreach (var e in Upserts)
        {
            e.Encode(w);
        }
        MapCodec.WriteStringList(w, Removals);
        ServiceKey.EncodeMap(w, ServiceKeys);
        w.EndStruct(m);
    }

    public static AuthIncrement Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "auth increment");
        var version = r.ReadU64();
        var n = MapCodec.ReadCount(ref r, 6, "auth increment entities");
        var upserts = new List<AuthEntity>(n);
        for (var i = 0; i < n; i++)
        {
            upserts.Add(AuthEntity.Decode(ref r));
        }
        var removals = MapCodec.ReadStringList(ref r, "auth increment removals");
        var keys = s.Version >= 2 ? ServiceKey.DecodeMap(ref r) : null;
        r.EndStruct(s);
        return keys is null ? new AuthIncrement(version, upserts, removals) : new AuthIncrement(version, upserts, removals) { ServiceKeys = keys };
    }
}
