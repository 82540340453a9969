using System.Buffers.Binary;
using Appliance.BlockDev.Images;
using Appliance.BlockDev.Nbd.Protocol;
using Appliance.BlockDev.Nbd.Server;

namespace Appliance.BlockDev.Tests.Hostile;

/// <summary>Many requests in flight, several connections to one export, and image errors reported with offsets.</summary>
public sealed class ConcurrencyAndErrorTests(ITestOutputHelper output)
{
    private const long Size = 16L << 20;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Many_pipelined_requests_each_get_exactly_one_correct_reply(bool poll)
    {
        var seed = Tools.Seed(output);
        var random = new Random(seed);
        // With the default short poll before each blocking read, and without.
        await using var s = await TestServer.StartAsync(
            poll ? null : (store, log) => new NbdServerOptions { Catalog = store, Log = log, ReceiveSpin = TimeSpan.Zero }, ("disk", Size));
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await c.NegotiateAsync("disk");
        // 100 writes of distinct blocks, sent in one burst, then 100 reads of them in another burst.
        var blocks = Enumerable.Range(0, 100).Select(i => (Offset: (ulong)i * 65536 + (ulong)random.Next(0, 60000), Data: new byte[random.Next(1, 5000)])).ToList();
        var burst = new MemoryStream();
        for (var i = 0; i < blocks.Count; i++)
        {
            random.NextBytes(blocks[i].Data);
            burst.Write(RawNbdClient.Request(NbdCommand.Write, (ulong)i, blocks[i].Offset, (uint)blocks[i].Data.Length, i % 7 == 0 ? CommandFlags.Fua : 0));
            burst.Write(blocks[i].Data);
        }
        await c.Stream.WriteAsync(burst.ToArray());
        var seen = new HashSet<ulong>();
        for (var i = 0; i < blocks.Count; i++)
        {
            var r = await c.ReadReplyAsync();
            Assert.Equal(0u, r.ErrorValue);
            Assert.True(seen.Add(r.Cookie), $"cookie {r.Cookie} answered twice");
        }
        burst.SetLength(0);
        for (var i = 0; i < blocks.Count; i++)
        {
            burst.Write(RawNbdClient.Request(NbdCommand.Read, 1000 + (ulong)i, blocks[i].Offset, (uint)blocks[i].Data.Length));
        }
        await c.Stream.WriteAsync(burst.ToArray());
        seen.Clear();
        for (var i = 0; i < blocks.Count; i++)
        {
            var r = await c.ReadReplyAsync();
            Assert.True(r.Done, "a small read is answered in one chunk");
            var index = (int)(r.Cookie - 1000);
            Assert.True(seen.Add(r.Cookie));
            Assert.Equal(ReplyChunkType.OffsetData, r.Type);
            Assert.Equal(blocks[index].Offset, BinaryPrimitives.ReadUInt64BigEndian(r.Payload));
            Assert.Equal(blocks[index].Data, r.Payload[8..]);
        }
        // DISC: the server answers nothing more and closes.
        await c.SendRequestAsync(NbdCommand.Disc, 0, 0, 0);
        Assert.True(await c.IsClosedByServerAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Writes_acknowledged_on_one_connection_are_seen_and_flushed_through_others()
    {
        await using var s = await TestServer.StartAsync(null, ("disk", Size));
        await using var a = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await using var b = await RawNbdClient.ConnectTcpAsync(s.Tcp);
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        var flags = (await a.NegotiateAsync("disk")).Flags;
        Assert.True((flags & TransmissionFlags.CanMultiConn) != 0);
        await b.NegotiateAsync("disk");
        await c.NegotiateAsync("disk");
        Assert.Equal(1, s.Server.OpenExports);
        var data = new byte[300_000];
        new Random(5).NextBytes(data);
        await a.SendRequestAsync(NbdCommand.Write, 1, 4095, (uint)data.Length, payload: data);
        Assert.Equal(0u, (await a.ReadReplyAsync()).ErrorValue);
        await b.SendRequestAsync(NbdCommand.Flush, 2, 0, 0);
        Assert.Equal(0u, (await b.ReadReplyAsync()).ErrorValue);
        await c.SendRequestAsync(NbdCommand.Read, 3, 4095, (uint)data.Length);
        var back = new byte[data.Length];
        Assert.Equal(0u, await c.ReadStructuredReadAsync(3, 4095, back));
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task Image_errors_become_error_chunks_with_offsets_and_simple_errors()
    {
        const long bad = 5L << 20;
        await using var s = await TestServer.StartAsync((cat, log) => new NbdServerOptions
        {
            Catalog = new FaultyCatalog((LocalImageStore)cat, bad),
            Log = log,
        }, ("disk", Size));
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await c.NegotiateAsync("disk");
        // A read across the failing byte: data before it may come, then ERROR_OFFSET naming the failing byte.
        await c.SendRequestAsync(NbdCommand.Read, 1, (ulong)(bad - 4096), 8192, CommandFlags.Df);
        var r = await c.ReadReplyAsync();
        Assert.Equal(ReplyChunkType.ErrorOffset, r.Type);
        Assert.True(r.Done);
        Assert.Equal((uint)NbdError.Io, r.ErrorValue);
        var messageLength = BinaryPrimitives.ReadUInt16BigEndian(r.Payload.AsSpan(4));
        Assert.Contains("injected", System.Text.Encoding.UTF8.GetString(r.Payload, 6, messageLength));
        Assert.Equal((ulong)bad, BinaryPrimitives.ReadUInt64BigEndian(r.Payload.AsSpan(6 + messageLength)));
        // A write there fails with ENOSPC (the injected kind), and the connection goes on.
        await c.SendRequestAsync(NbdCommand.Write, 2, (ulong)bad, 512, payload: new byte[512]);
        Assert.Equal((uint)NbdError.NoSpc, (await c.ReadReplyAsync()).ErrorValue);
        await c.SendRequestAsync(NbdCommand.Read, 3, 0, 4096);
        Assert.Equal(0u, await c.ReadStructuredReadAsync(3, 0, new byte[4096]));

        await using var simple = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await simple.NegotiateAsync("disk", structured: false);
        await simple.SendRequestAsync(NbdCommand.Read, 4, (ulong)bad, 512);
        var sr = await simple.ReadReplyAsync(_ => 512);
        Assert.Null(sr.Type);
        Assert.Equal((uint)NbdError.Io, sr.Error);
        Assert.Empty(sr.Payload);
        await simple.SendRequestAsync(NbdCommand.Read, 5, 0, 512);
        Assert.Equal(0u, (await simple.ReadReplyAsync(_ => 512)).Error);
    }

    /// <summary>Serves the real local images, wrapped so one byte offset fails (like the platform's fault device).</summary>
    private sealed class FaultyCatalog(LocalImageStore inner, long badOffset) : IImageCatalog
    {
        public ValueTask<IReadOnlyList<string>> ListNamesAsync(CancellationToken ct) => ValueTask.FromResult(inner.ListNames());

        public ValueTask<bool> ExistsAsync(string name, CancellationToken ct) => ValueTask.FromResult(inner.ListNames().Contains(name));

        public ValueTask<string?> DescribeAsync(string name, CancellationToken ct) => ValueTask.FromResult<string?>("faulty " + name);

        public ValueTask<ImageOpenResult> OpenAsync(string name, bool readOnly, CancellationToken ct) =>
            ValueTask.FromResult(inner.TryOpen(name, readOnly) is { } image ? ImageOpenResult.Opened(new FaultyImage(image, badOffset)) : ImageOpenResult.NotFound);
    }

    private sealed class FaultyImage(IImage inner, long bad) : IImage
    {
        public string Name => inner.Name;

        public long Size => inner.Size;

        public bool IsReadOnly => inner.IsReadOnly;

        public bool FlushCoversAllWriters => inner.FlushCoversAllWriters;

        private bool Covers(long offset, long length) => offset <= bad && bad < offset + length;

        public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct) =>
            Covers(offset, destination.Length) ? throw new ImageException(ImageErrorKind.Io, "injected read error", bad) : inner.ReadAsync(offset, destination, ct);

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, bool fua, CancellationToken ct) =>
            Covers(offset, source.Length) ? throw new ImageException(ImageErrorKind.NoSpace, "injected: no space", bad) : inner.WriteAsync(offset, source, fua, ct);

        public ValueTask FlushAsync(CancellationToken ct) => inner.FlushAsync(ct);

        public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken ct) => inner.TrimAsync(offset, length, fua, ct);

        public ValueTask<bool> ZeroAsync(long offset, long length, ZeroOptions options, bool fua, CancellationToken ct) => inner.ZeroAsync(offset, length, options, fua, ct);

        public ValueTask<int> GetExtentsAsync(long offset, long length, Memory<ImageExtent> destination, CancellationToken ct) => inner.GetExtentsAsync(offset, length, destination, ct);

        public ValueTask CacheAsync(long offset, long length, CancellationToken ct) => inner.CacheAsync(offset, length, ct);

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
