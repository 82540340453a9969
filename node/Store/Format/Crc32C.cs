using System.Buffers.Binary;
using System.Numerics;

namespace Appliance.Store.Format;

/// <summary>CRC-32C (Castagnoli) over spans with the hardware instruction behind <see cref="BitOperations.Crc32C(uint, ulong)"/>.
/// The conventional pre- and post-inversion is applied, so results match other crc32c implementations for seed 0.</summary>
public static class Crc32C
{
    public static uint Compute(ReadOnlySpan<byte> data, uint seed = 0)
    {
        var crc = ~seed;
        var i = 0;
        for (; i + 8 <= data.Length; i += 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data[i..]));
        }
        for (; i < data.Length; i++)
        {
            crc = BitOperations.Crc32C(crc, data[i]);
        }
        return ~crc;
    }
}
