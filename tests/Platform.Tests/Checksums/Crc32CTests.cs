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
        var seed = TestSeed.Get(nameof(Matches_the_reference_at_every_length_around_the_stripe_boundaries), fallback: 1);
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

    [Fact]
    public void The_folding_and_the_instruction_paths_agree_with_the_reference()
    {
        // Compute takes the carry-less folding path for inputs of 256 bytes and more where the CPU has it; the
        // instruction path is the other implementation. Lengths cover every fold boundary (64-byte steps, the
        // 256-byte four-accumulator loop, the 512-byte start of it) with tails, unaligned, with seeds.
        Console.WriteLine($"folding path active on this machine: {Crc32C.Folding}");
        var rng = new Random(11);
        var data = new byte[70_000];
        rng.NextBytes(data);
        var lengths = new List<int>();
        foreach (var edge in new[] { 256, 320, 512, 576, 768, 1024, 4096, 65536 })
        {
            for (var d = -5; d <= 70; d += 5)
            {
                lengths.Add(edge + d);
            }
        }
        for (var i = 0; i < 60; i++)
        {
            lengths.Add(256 + rng.Next(data.Length - 300));
        }
        foreach (var length in lengths)
        {
            var offset = rng.Next(data.Length - length + 1);
            var piece = data.AsSpan(offset, length);
            var seed = (uint)rng.Next();
            var expected = Reference(piece, seed);
            Assert.True(expected == Crc32C.Compute(piece, seed), $"Compute: length {length} at offset {offset}");
            Assert.True(expected == ~Crc32C.Instruction(~seed, piece), $"Instruction: length {length} at offset {offset}");
        }
        // All zeros and all ones (a fold constant that is wrong by one bit position still agrees on some inputs).
        foreach (var fill in new byte[] { 0, 0xff })
        {
            var block = new byte[4096];
            Array.Fill(block, fill);
            Assert.Equal(Reference(block), Crc32C.Compute(block));
        }
    }

    [Fact]
    public void Block_crcs_equal_one_pass_per_block_on_both_paths()
    {
        var rng = new Random(5);
        foreach (var (blocks, size) in new[] { (1, 4096), (3, 4096), (4, 4096), (5, 4096), (13, 4096), (9, 512), (6, 64) })
        {
            var data = new byte[blocks * size + 8];
            rng.NextBytes(data);
            // An odd start: the words are read unaligned.
            var span = data.AsSpan(3, blocks * size);
            var crcs = new uint[blocks];
            var byInstruction = new uint[blocks];
            Crc32C.ComputeBlocks(span, size, crcs);
            Crc32C.BlocksByInstruction(span, size, byInstruction);
            for (var b = 0; b < blocks; b++)
            {
                var expected = Reference(span.Slice(b * size, size));
                Assert.Equal(expected, crcs[b]);
                Assert.Equal(expected, byInstruction[b]);
            }
        }
        Assert.Throws<ArgumentException>(() => Crc32C.ComputeBlocks(new byte[4097], 4096, new uint[2]));
    }
}
