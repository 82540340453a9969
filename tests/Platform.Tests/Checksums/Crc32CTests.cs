using Appliance.Platform.Checksums;

namespace Appliance.Platform.Tests.Checksums;

public sealed class Crc32CTests
{
    /// <summary>The textbook bit-at-a-time crc32c: slow, obviously right.</summary>
    private static uint Reference(ReadOnlySpan<byte> data, uint seed = 0)
    {
        var crc = ~seed;
        foreach (var b in data)
        {
            crc ^= b;
            for (var i = 0; i < 8; i++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
            }
        }
        return ~crc;
    }

    [Fact]
    public void Known_check_values()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
        Assert.Equal(0u, Crc32C.Compute([]));
        // RFC 3720 B.4: 32 bytes of zeros.
        Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));
    }

    [Fact]
    public void Matches_the_reference_at_every_length_around_the_stripe_boundaries()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("APPLIANCE_SEED"), out var s) ? s : 1;
        Console.WriteLine($"APPLIANCE_SEED={seed}");
        var rng = new Random(seed);
        var data = new byte[3 * 8192 * 2 + 3 * 256 + 77];
        rng.NextBytes(data);
        var lengths = new List<int>();
        for (var n = 0; n < 64; n++)
        {
            lengths.Add(n);
        }
        foreach (var edge in new[] { 3 * 256, 3 * 8192, 2 * 3 * 8192, data.Length })
        {
            for (var d = -9; d <= 9; d++)
            {
                if (edge + d >= 0 && edge + d <= data.Length)
                {
                    lengths.Add(edge + d);
                }
            }
        }
        for (var i = 0; i < 40; i++)
        {
            lengths.Add(rng.Next(data.Length + 1));
        }
        foreach (var length in lengths)
        {
            var offset = rng.Next(data.Length - length + 1); // unaligned starts too
            var piece = data.AsSpan(offset, length);
            Assert.True(Reference(piece) == Crc32C.Compute(piece), $"length {length} at offset {offset}");
        }
    }

    [Fact]
    public void Continuing_from_a_seed_equals_one_pass()
    {
        var rng = new Random(7);
        var data = new byte[100_000];
        rng.NextBytes(data);
        for (var i = 0; i < 50; i++)
        {
            var cut = rng.Next(data.Length + 1);
            var first = Crc32C.Compute(data.AsSpan(0, cut));
            Assert.Equal(Crc32C.Compute(data), Crc32C.Compute(data.AsSpan(cut), first));
        }
        Assert.Equal(Reference(data.AsSpan(10, 30_000), 0x12345678), Crc32C.Compute(data.AsSpan(10, 30_000), 0x12345678));
    }
}
