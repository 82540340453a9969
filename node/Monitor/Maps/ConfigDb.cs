using System.Collections.Immutable;
using System.Globalization;
using Appliance.Maps;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Maps;

/// <summary>
/// The central configuration: values set for known options (<see cref="ConfigOptions"/>), in canonical text.
/// Options not set have their default. Immutable; <see cref="Apply"/> returns the next version. A decoded database may
/// hold names this build does not know (set by a newer release): they are kept and ignored.
/// </summary>
public sealed class ConfigDb
{
    private const byte Version = 1;

    public ConfigDb(ulong version, ImmutableSortedDictionary<string, string> values)
    {
        MapVersion = version;
        Values = values;
    }

    public static ConfigDb Empty { get; } = new(0, ImmutableSortedDictionary.Create<string, string>(StringComparer.Ordinal));

    public ulong MapVersion { get; }
    /// <summary>The options set explicitly.</summary>
    public ImmutableSortedDictionary<string, string> Values { get; }

    /// <summary>The effective value: the one set, else the default. Throws for unknown names.</summary>
    public string Get(string name)
    {
        var option = ConfigOptions.Find(name) ?? throw new ArgumentException($"unknown configuration option '{name}'", nameof(name));
        return Values.TryGetValue(name, out var v) ? v : option.Default;
    }

    public long GetInt(string name) => long.Parse(Get(name), CultureInfo.InvariantCulture);

    public double GetDouble(string name) => double.Parse(Get(name), CultureInfo.InvariantCulture);

    public bool GetBool(string name) => Get(name) == "true";

    public TimeSpan GetSeconds(string name) => TimeSpan.FromSeconds(GetInt(name));

    public ConfigDb Apply(ConfigIncrement inc)
    {
        ArgumentNullException.ThrowIfNull(inc);
        if (inc.MapVersion != MapVersion + 1)
        {
            throw new MapSequenceException($"config increment {inc.MapVersion} applied to version {MapVersion}");
        }
        var b = Values.ToBuilder();
        foreach (var (name, value) in inc.Changes)
        {
            if (value is null)
            {
                b.Remove(name);
            }
            else
            {
                b[name] = value;
            }
        }
        return new ConfigDb(inc.MapVersion, b.ToImmutable());
    }

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteU64(MapVersion);
        w.WriteU32((uint)Values.Count);
        foreach (var (k, v) in Values)
        {
            w.WriteString(k);
            w.WriteString(v);
        }
        w.EndStruct(m);
    }

    public static ConfigDb Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "config database");
        var version = r.ReadU64();
        var n = MapCodec.ReadCount(ref r, 8, "config values");
        var b = ImmutableSortedDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < n; i++)
        {
            var k = r.ReadString(MapCodec.MaxString);
            if (!b.TryAdd(k, r.ReadString(MapCodec.MaxString)))
            {
                throw new WireFormatException($"config database sets {k} twice");
            }
        }
        r.EndStruct(s);
        return new ConfigDb(version, b.ToImmutable());
    }

    public byte[] ToBytes() => MapCodec.ToBytes(Encode);

    public static ConfigDb FromBytes(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var db = Decode(ref r);
        r.ExpectEnd("config database");
        return db;
    }
}

/// <summary>The change from config version V-1 to V: options set (canonical value) or reset to default (null).</summary>
public sealed record ConfigIncrement(ulong MapVersion, IReadOnlyList<KeyValuePair<string, string?>> Changes)
{
    private const byte Version = 1;

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteU64(MapVersion);
        w.WriteU32((uint)Changes.Count);
        foreach (var (k, v) in Changes)
        {
            w.WriteString(k);
            MapCodec.WriteOptionalString(w, v);
        }
        w.EndStruct(m);
    }

    public static ConfigIncrement Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "config increment");
        var version = r.ReadU64();
        var n = MapCodec.ReadCount(ref r, 5, "config increment changes");
        var changes = new List<KeyValuePair<string, string?>>(n);
        for (var i = 0; i < n; i++)
        {
            changes.Add(new(r.ReadString(MapCodec.MaxString), MapCodec.ReadOptionalString(ref r)));
        }
        r.EndStruct(s);
        return new ConfigIncrement(version, changes);
    }
}
