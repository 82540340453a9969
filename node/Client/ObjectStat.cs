using Appliance.Osd.Protocol;
using Appliance.Wire.Codec;

namespace Appliance.Client;

/// <summary>What <see cref="IoContext.StatAsync"/> tells about an object: its size, when it was last changed, and
/// its version (the one an <see cref="OsdOp.AssertVersion"/> guard compares with).</summary>
public sealed record ObjectStat(ulong Size, DateTimeOffset Modified, ulong Version)
{
    /// <summary>
    /// Reads a Stat sub-op's output: u64 size then i64 mtime in Unix milliseconds (Wire's little-endian encoding),
    /// the version from the reply. (This encoding is the client's reading of the OSD's Stat output; it belongs in
    /// node/OsdProtocol beside the op once the OSD writes it.)
    /// </summary>
    internal static ObjectStat From(OsdOpOutput output, ulong objectVersion)
    {
        if (output.Data.Length < 16)
        {
            throw new OsdProtocolException($"a stat output of {output.Data.Length} bytes (expected size and mtime, 16)");
        }
        var r = new WireReader(output.Data.Span);
        var size = r.ReadU64();
        var mtime = r.ReadI64();
        return new ObjectStat(size, DateTimeOffset.FromUnixTimeMilliseconds(Math.Clamp(mtime, -62135596800000L, 253402300799999L)), objectVersion);
    }
}

/// <summary>One page of an object's omap: entries in key order, and whether more follow.</summary>
public sealed record OmapPage(IReadOnlyList<KeyValuePair<string, byte[]>> Entries, bool More);
