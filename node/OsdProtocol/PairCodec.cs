using Appliance.Wire.Codec;

namespace Appliance.Osd.Protocol;

/// <summary>The one encoding of key/value lists (xattrs, omap pages) and key lists in OSD messages: a u32 count, then
/// each string (and its bytes). Decoding bounds the count by the bytes left and each key and value by the limits
/// given, so hostile input costs an exception, never an allocation beyond its size.</summary>
public static class PairCodec
{
    public static void WritePairs(WireWriter w, IReadOnlyList<KeyValuePair<string, byte[]>> pairs)
    {
        w.WriteU32((uint)pairs.Count);
        foreach (var (k, v) in pairs)
        {
            w.WriteString(k);
            w.WriteBytes(v);
        }
    }

    public static KeyValuePair<string, byte[]>[] ReadPairs(ref WireReader r, int maxKey, int maxValue, string what)
    {
        var pairs = new KeyValuePair<string, byte[]>[Limits.ReadCount(ref r, 8, what)];
        for (var i = 0; i < pairs.Length; i++)
        {
            pairs[i] = new(r.ReadString(maxKey), r.ReadBytes(maxValue).ToArray());
        }
        return pairs;
    }

    public static void WriteKeys(WireWriter w, IReadOnlyList<string> keys)
    {
        w.WriteU32((uint)keys.Count);
        foreach (var k in keys)
        {
            w.WriteString(k);
        }
    }

    public static string[] ReadKeys(ref WireReader r, int maxKey, string what)
    {
        var keys = new string[Limits.ReadCount(ref r, 4, what)];
        for (var i = 0; i < keys.Length; i++)
        {
            keys[i] = r.ReadString(maxKey);
        }
        return keys;
    }
}
