using Appliance.Erasure.Kernels;

namespace Appliance.Erasure.Tests;

/// <summary>A caller's mistake is refused with an ArgumentException that says what is wrong.</summary>
public class RefusalTests
{
    private static Memory<byte>[] Chunks(int count, int len) => [.. Enumerable.Range(0, count).Select(_ => new Memory<byte>(new byte[len]))];

    private static ReadOnlyMemory<byte>[] ReadOnly(Memory<byte>[] chunks) => [.. chunks.Select(c => (ReadOnlyMemory<byte>)c)];

    [Theory]
    [InlineData(0, 2)]
    [InlineData(4, 0)]
    [InlineData(60, 5)]
    [InlineData(-1, 1)]
    public void ImpossibleCodes_AreRefused(int k, int m)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new ReedSolomonCodec(k, m));
        Assert.Contains("K + M <= 64", e.Message);
    }

    [Fact]
    public void Reconstruct_WithFewerThanKChunks_IsRefused()
    {
        var codec = new ReedSolomonCodec(4, 2);
        var e = Assert.Throws<ArgumentException>(() => codec.Reconstruct(Chunks(6, 10), 0b100101));
        Assert.Contains("only 3 of the 6 chunks are present; at least 4", e.Message);
    }

    [Fact]
    public void MismatchedLengths_AreRefused()
    {
        var codec = new ReedSolomonCodec(4, 2);
        var data = Chunks(4, 100);
        data[2] = new byte[99];
        var e = Assert.Throws<ArgumentException>(() => codec.Encode(ReadOnly(data), Chunks(2, 100)));
        Assert.Contains("data chunk 2 is 99 bytes, not 100", e.Message);
        e = Assert.Throws<ArgumentException>(() => codec.Encode(ReadOnly(Chunks(4, 100)), [new byte[100], new byte[101]]));
        Assert.Contains("parity chunk 1 is 101 bytes, not 100", e.Message);

        var chunks = Chunks(6, 100);
        chunks[5] = new byte[64];
        e = Assert.Throws<ArgumentException>(() => codec.Reconstruct(chunks, 0b011111));
        Assert.Contains("chunk 5 is 64 bytes, not 100", e.Message);

        e = Assert.Throws<ArgumentException>(() => codec.UpdateParity(0, new byte[10], new byte[11], Chunks(2, 10)));
        Assert.Contains("old data is 10 bytes and the new 11", e.Message);
        e = Assert.Throws<ArgumentException>(() => codec.UpdateParity(0, new byte[10], new byte[10], Chunks(2, 9)));
        Assert.Contains("parity chunk 0 is 9 bytes, not 10", e.Message);
        e = Assert.Throws<ArgumentException>(() => codec.ApplyDelta(0, 1, new byte[10], new byte[12]));
        Assert.Contains("the delta is 10 bytes and the parity range 12", e.Message);
    }

    [Fact]
    public void WrongChunkCounts_AreRefused()
    {
        var codec = new ReedSolomonCodec(4, 2);
        var e = Assert.Throws<ArgumentException>(() => codec.Encode(ReadOnly(Chunks(3, 8)), Chunks(2, 8)));
        Assert.Contains("4 data chunks expected, got 3", e.Message);
        e = Assert.Throws<ArgumentException>(() => codec.Encode(ReadOnly(Chunks(4, 8)), Chunks(3, 8)));
        Assert.Contains("2 parity chunks expected, got 3", e.Message);
        e = Assert.Throws<ArgumentException>(() => codec.Reconstruct(Chunks(5, 8), 0b1111));
        Assert.Contains("6 chunks (4 data + 2 parity) expected, got 5", e.Message);
        e = Assert.Throws<ArgumentException>(() => codec.Reconstruct(Chunks(6, 8), 0b1001111));
        Assert.Contains("past the last", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => codec.ApplyDelta(4, 0, new byte[1], new byte[1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => codec.UpdateParity(-1, new byte[1], new byte[1], Chunks(2, 1)));
    }

    [Fact]
    public void ContiguousStripesOfTheWrongShape_AreRefused()
    {
        var codec = new ReedSolomonCodec(4, 2);
        var e = Assert.Throws<ArgumentException>(() => codec.Encode(new byte[10], new byte[4]));
        Assert.Contains("cannot be 10 bytes (not a multiple of 4)", e.Message);
        e = Assert.Throws<ArgumentException>(() => codec.Encode(new byte[16], new byte[6]));
        Assert.Contains("2 parity chunks of 4 bytes take 8 bytes, not 6", e.Message);
        e = Assert.Throws<ArgumentException>(() => codec.Reconstruct(new byte[25], 0b111100));
        Assert.Contains("not a multiple of 6", e.Message);
        e = Assert.Throws<ArgumentException>(() => codec.Reconstruct(new byte[24], 0b111000));
        Assert.Contains("only 3 of the 6 chunks are present", e.Message);
    }

    [Fact]
    public void NothingMissing_IsNotAnError_AndWritesNothing()
    {
        var codec = new ReedSolomonCodec(2, 1, GfKernel.Portable);
        var chunks = Chunks(3, 4);
        chunks[2].Span.Fill(7);
        codec.Reconstruct(chunks, 0b111);
        Assert.All(chunks[2].ToArray(), b => Assert.Equal(7, b));
    }
}
