using System.Text;
using Appliance.Wire.Codec;

namespace Appliance.Maps;

/// <summary>
/// Encoding helpers shared by the maps. Every map, increment and entry is a versioned structure
/// (<see cref="WireWriter.BeginStruct"/>): a decoder reads the fields it knows and skips what a newer writer appended.
/// Collections are written in key order, so one map has exactly one encoding and equal maps have equal bytes.
/// </summary>
internal static class MapCodec
{
    /// <summary>Longest string field in a map (names, addresses, commands).</summary>
    public const int MaxString = 4096;
    /// <summary>Longest CRUSH map text.</summary>
    public const int MaxCrushText = 16 << 20;

    public static byte[] ToBytes(Action<WireWriter> encode)
    {
        using var w = new WireWriter(1024);
        encode(w);
        return w.ToArray();
    }

    /// <summary>A count of elements that each take at least <paramref name="minBytes"/>: refuses counts the remaining
    /// bytes cannot hold, so hostile input cannot make a decoder loop or allocate far beyond its size.</summary>
    public static int ReadCount(ref WireReader r, int minBytes, string what)
    {
        var count = r.ReadU32();
        if (count > (uint)(r.Remaining / Math.Max(1, minBytes)))
        {
            throw new WireFormatException($"{what}: count {count} does not fit in the {r.Remaining} remaining bytes");
        }
        return (int)count;
    }

    /// <summary>A 32-byte key, as its bytes (Wire keeps a <see cref="Appliance.Wire.Auth.Secret"/>'s bytes to itself;
    /// its base64 form is the public way out).</summary>
    public static void WriteSecret(WireWriter w, Appliance.Wire.Auth.Secret key) => w.WriteBytes(Convert.FromBase64String(key.ToBase64()));

    /// <summary>Reads what <see cref="WriteSecret"/> wrote; any other length is refused, naming <paramref name="whose"/>.</summary>
    public static Appliance.Wire.Auth.Secret ReadSecret(ref WireReader r, string whose)
    {
        var bytes = r.ReadBytes(Appliance.Wire.Auth.Secret.Size);
        if (bytes.Length != Appliance.Wire.Auth.Secret.Size)
        {
            throw new WireFormatException($"{whose} has a key of {bytes.Length} bytes");
        }
        return new Appliance.Wire.Auth.Secret(bytes);
    }

    public static void WriteOptionalString(WireWriter w, string? s)
    {
        w.WriteBool(s is not null);
        if (s is not null)
        {
            w.WriteString(s);
        }
    }

    public static string? ReadOptionalString(ref WireReader r, int max = MaxString) => r.ReadBool() ? r.ReadString(max) : null;

    public static void WriteLongString(WireWriter w, string s) => w.WriteBytes(Encoding.UTF8.GetBytes(s));

    public static string ReadLongString(ref WireReader r, int max) => r.ReadString(max);

    public static void WriteGuid(WireWriter w, Guid g)
    {
        Span<byte> b = stackalloc byte[16];
        g.TryWriteBytes(b);
        w.WriteFixed(b);
    }

    public static Guid ReadGuid(ref WireReader r) => new(r.ReadFixed(16));

    public static void WriteIntList(WireWriter w, IReadOnlyCollection<int> values)
    {
        w.WriteU32((uint)values.Count);
        foreach (var v in values)
        {
            w.WriteI32(v);
        }
    }

    public static List<int> ReadIntList(ref WireReader r, string what)
    {
        var n = ReadCount(ref r, 4, what);
        var list = new List<int>(n);
        for (var i = 0; i < n; i++)
        {
            list.Add(r.ReadI32());
        }
        return list;
    }

    public static void WriteStringList(WireWriter w, IReadOnlyCollection<string> values)
    {
        w.WriteU32((uint)values.Count);
        foreach (var v in values)
        {
            w.WriteString(v);
        }
    }

    public static List<string> ReadStringList(ref WireReader r, string what)
    {
        var n = ReadCount(ref r, 4, what);
        var list = new List<string>(n);
        for (var i = 0; i < n; i++)
        {
            list.Add(r.ReadString(MaxString));
        }
        return list;
    }
}
