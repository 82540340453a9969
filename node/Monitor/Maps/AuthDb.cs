using System.Collections.Immutable;
using Appliance.Wire.Auth;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Maps;

/// <summary>One entity of the auth database: its name (<c>client.admin</c>, <c>osd.3</c>), secret and capabilities per
/// service (<c>mon</c> → <c>allow *</c>), in Ceph's syntax, validated by <see cref="ServiceCaps.Parse"/>.</summary>
public sealed record AuthEntity(string Name, Secret Key, ImmutableSortedDictionary<string, string> Caps)
{
    private const byte Version = 1;

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
        var m = w.BeginStruct(Version, 1);
        w.WriteString(Name);
        w.WriteBytes(Convert.FromBase64String(Key.ToBase64()));
        w.WriteU32((uint)Caps.Count);
        foreach (var (service, caps) in Caps)
        {
            w.WriteString(service);
            w.WriteString(caps);
        }
        w.EndStruct(m);
    }

    internal static AuthEntity Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "auth entity");
        var name = r.ReadString(MapCodec.MaxString);
        var keyBytes = r.ReadBytes(Secret.Size);
        if (keyBytes.Length != Secret.Size)
        {
            throw new WireFormatException($"auth entity {name} has a key of {keyBytes.Length} bytes");
        }
        var key = new Secret(keyBytes);
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
        r.EndStruct(s);
        return new AuthEntity(name, key, caps.ToImmutable());
    }
}

/// <summary>
/// The auth database: every entity that may talk to the cluster — the source of truth for the messenger's
/// authentication. Immutable; <see cref="Apply"/> returns the next version.
/// </summary>
public sealed class AuthDb
{
    private const byte Version = 1;

    public AuthDb(ulong version, ImmutableSortedDictionary<string, AuthEntity> entities)
    {
        MapVersion = version;
        Entities = entities;
    }

    public static AuthDb Empty { get; } = new(0, ImmutableSortedDictionary.Create<string, AuthEntity>(StringComparer.Ordinal));

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
        return new AuthDb(inc.MapVersion, b.ToImmutable());
    }

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteU64(MapVersion);
        w.WriteU32((uint)Entities.Count);
        foreach (var e in Entities.Values)
        {
            e.Encode(w);
        }
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
        r.EndStruct(s);
        return new AuthDb(version, b.ToImmutable());
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

/// <summary>The change from auth version V-1 to V: entities added or replaced whole, and removed.</summary>
public sealed record AuthIncrement(ulong MapVersion, IReadOnlyList<AuthEntity> Upserts, IReadOnlyList<string> Removals)
{
    private const byte Version = 1;

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteU64(MapVersion);
        w.WriteU32((uint)Upserts.Count);
        foreach (var e in Upserts)
        {
            e.Encode(w);
        }
        MapCodec.WriteStringList(w, Removals);
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
        r.EndStruct(s);
        return new AuthIncrement(version, upserts, removals);
    }
}
