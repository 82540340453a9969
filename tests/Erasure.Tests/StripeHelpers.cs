using Appliance.Erasure.Field;

namespace Appliance.Erasure.Tests;

/// <summary>Random stripes and the slow reference encoder the codec is checked against.</summary>
internal static class StripeHelpers
{
    /// <summary>K random data chunks of <paramref name="len"/> bytes, each a slice at a random offset of a larger
    /// array, so no chunk starts aligned.</summary>
    public static ReadOnlyMemory<byte>[] RandomData(Random rng, int k, int len) =>
        [.. Enumerable.Range(0, k).Select(_ => (ReadOnlyMemory<byte>)RandomSlice(rng, len))];

    public static Memory<byte> RandomSlice(Random rng, int len)
    {
        var offset = rng.Next(0, 64);
        var buffer = new byte[offset + len + rng.Next(0, 8)];
        rng.NextBytes(buffer);
        return buffer.AsMemory(offset, len);
    }

    public static Memory<byte>[] Buffers(Random rng, int count, int len) =>
        [.. Enumerable.Range(0, count).Select(_ => RandomSlice(rng, len))];

    /// <summary>Parity by definition: parity p, byte i = sum over j of G[K+p][j] * data j, byte i.</summary>
    public static byte[][] ReferenceParity(ReedSolomonCodec codec, ReadOnlyMemory<byte>[] data)
    {
        var k = codec.DataChunks;
        var len = data[0].Length;
        var g = codec.Generator;
        var parity = new byte[codec.ParityChunks][];
        for (var p = 0; p < codec.ParityChunks; p++)
        {
            parity[p] = new byte[len];
            for (var j = 0; j < k; j++)
            {
                var c = g[((k + p) * k) + j];
                var d = data[j].Span;
                for (var i = 0; i < len; i++)
                {
                    parity[p][i] ^= Gf256.Mul(c, d[i]);
                }
            }
        }
        return parity;
    }

    public static IEnumerable<ulong> ErasurePatterns(int n, int maxErased)
    {
        for (ulong mask = 1; mask < (1UL << n); mask++)
        {
            if (System.Numerics.BitOperations.PopCount(mask) <= maxErased)
            {
                yield return mask;
            }
        }
    }
}
