using System.Buffers.Binary;

namespace Appliance.Paxos.Encoding;

/// <summary>A 64-bit non-cryptographic hash of a byte string (multiply–xorshift over 8-byte words, then a final
/// avalanche). It names a snapshot copy in a transfer: two copies with the same hash hold the same bytes (barring a
/// 2^-64 accident), so pieces of one may complete the other — even across a restart of the sender.</summary>
internal static class ContentHash
{
    private const ulong Prime = 0x9E3779B97F4A7C15;

    public static long Of(long index, ReadOnlySpan<byte> data)
    {
        var h = (ulong)index * Prime ^ (ulong)data.Length;
        var i = 0;
        for (; i + 8 <= data.Length; i += 8)
        {
            h = Mix(h ^ BinaryPrimitives.ReadUInt64LittleEndian(data[i..]));
        }
        ulong tail = 0;
        for (var shift = 0; i < data.Length; i++, shift += 8)
        {
            tail |= (ulong)data[i] << shift;
        }
        return (long)Mix(Mix(h ^ tail) ^ 0xFF51AFD7ED558CCD);
    }

    private static ulong Mix(ulong h)
    {
        h *= Prime;
        h ^= h >> 29;
        h *= 0xBF58476D1CE4E5B9;
        return h ^ (h >> 32);
    }
}
