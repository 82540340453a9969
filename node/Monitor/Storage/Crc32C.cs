using System.Buffers.Binary;
using System.Numerics;

namespace Appliance.Monitor.Storage;

/// <summary>CRC-32C (Castagnoli) over a span, with the hardware instruction behind
/// <see cref="BitOperations.Crc32C(uint, ulong)"/>. Same convention as the object store: initial ~0, final ~.</summary>
internal static class Crc32C
{
    public static uint Compute(ReadOnlySpan<byte> data) => ~Append(~0u, data);

    /// <summary>Continues a raw (not finalised) CRC state over more bytes.</summary>
    public static uint Append(uint state, ReadOnlySpan<byte> data)
    {
        while (data.Length >= 8)
        {
            state = BitOperations.Crc32C(state, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        foreach (var b in data)
        {
            state = BitOperations.Crc32C(state, b);
        }
        return state;
    }

    /// <summary>The CRC of two spans as if concatenated (record header, then payload).</summary>
    public static uint Compute(ReadOnlySpan<byte> first, ReadOnlySpan<byte> second) => ~Append(Append(~0u, first), second);
}
