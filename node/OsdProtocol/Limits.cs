using Appliance.Wire.Codec;

namespace Appliance.Osd.Protocol;

/// <summary>The limits every OSD enforces on requests; a request past one gets a clear error, never a crash.</summary>
public static class Limits
{
    /// <summary>Longest object name, in UTF-8 bytes (Ceph's osd_max_object_name_len is 2048).</summary>
    public const int MaxObjectNameBytes = 2048;
    /// <summary>Longest xattr name or omap key.</summary>
    public const int MaxKeyBytes = 1024;
    /// <summary>Largest xattr or omap value.</summary>
    public const int MaxValueBytes = 64 << 10;
    /// <summary>Largest object (Ceph's osd_max_object_size is 128 MiB).</summary>
    public const long MaxObjectSize = 128L << 20;
    /// <summary>Largest data in one request or reply (the messenger's frame limit is 16 MiB).</summary>
    public const int MaxPayload = 15 << 20;
    /// <summary>Most sub-operations in one request.</summary>
    public const int MaxOps = 64;
    /// <summary>Most omap entries a page returns when the request asks for no bound, or for more.</summary>
    public const int OmapPage = 512;
    /// <summary>Most objects one PG listing returns.</summary>
    public const int ListPage = 1024;

    /// <summary>A count of elements that each take at least <paramref name="minBytes"/>: refused when the remaining
    /// bytes cannot hold it, so hostile input cannot make a decoder allocate far beyond its size.</summary>
    public static int ReadCount(ref WireReader r, int minBytes, string what)
    {
        var count = r.ReadU32();
        if (count > (uint)(r.Remaining / Math.Max(1, minBytes)))
        {
            throw new WireFormatException($"{what}: count {count} does not fit in the {r.Remaining} remaining bytes");
        }
        return (int)count;
    }

    /// <summary>Why an object name is refused, or null if it is fine.</summary>
    public static string? CheckObjectName(string name)
    {
        if (name.Length == 0)
        {
            return "an object name must not be empty";
        }
        if (System.Text.Encoding.UTF8.GetByteCount(name) > MaxObjectNameBytes)
        {
            return $"object names are at most {MaxObjectNameBytes} bytes";
        }
        if (name.Contains('\0', StringComparison.Ordinal))
        {
            return "object names must not contain NUL";
        }
        return null;
    }
}
