using System.Buffers.Binary;
using Appliance.BlockDev.Images;
using Appliance.BlockDev.Nbd.Protocol;
using Appliance.BlockDev.Nbd.Server;

namespace Appliance.BlockDev.Tests.Hostile;

/// <summary>
/// The transmission pipeline: replies batched into one send, leave in completion order (a request waiting on the
/// image holds up nobody), every request is answered before DISC closes, random pipelined mixes against a model,
/// and a client that pipelines without reading cannot make the server queue more than its request limit.
/// </summary>
public sealed class PipelineTests(ITestOutputHelper output)
{
    private const long Size = 16L << 20;
    private const long Gate = 3L << 20;

    [Fact]
    public async Task A_request_waiting_on_the_image_does_not_hold_up_later_replies()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var s = await TestServer.StartAsync((cat, log) => new NbdServerOptions
        {
            Catalog = new GatedCatalog((LocalImageStore)cat, () => gate.Task),
            Log = log,
        }, ("disk", Size));
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await c.NegotiateAsync("disk");
        var data = new byte[8192];
        new Random(3).NextBytes(data);
        await c.SendRequestAsync(NbdCommand.Write, 1, Gate, (uint)data.Length, payload: data);
        Assert.Equal(0u, (await c.ReadReplyAsync()).ErrorValue);

        // Cookie 10 reads the gated range and waits; everything after it (inline reads and writes, a FUA write and a
        // flush on the pool) is answered while it waits.
        await c.SendRequestAsync(NbdCommand.Read, 10, Gate, (uint)data.Length);
        await c.SendRequestAsync(NbdCommand.Write, 11, 0, 4096, payload: data[..4096]);
        await c.SendRequestAsync(NbdCommand.Read, 12, 0, 4096);
        await c.SendRequestAsync(NbdCommand.Write, 13, 65536, 4096, CommandFlags.Fua, payload: data[4096..]);
        await c.SendRequestAsync(NbdCommand.Flush, 14, 0, 0);
        var answered = new HashSet<ulong>();
        for (var i = 0; i < 4; i++)
        {
            var r = await c.ReadReplyAsync();
            Assert.NotEqual(10u, r.Cookie);
            Assert.Equal(0u, r.ErrorValue);
            Assert.True(r.Done);
            Assert.True(answered.Add(r.Cookie), $"cookie {r.Cookie} answered twice");
            if (r.Cookie == 12)
            {
                Assert.Equal(data[..4096], r.Payload[8..]);
            }
        }
        Assert.Equal([11ul, 12ul, 13ul, 14ul], answered.Order());

        // DISC while cookie 10 still waits: it must be answered before the server closes.
        await c.SendRequestAsync(NbdCommand.Disc, 15, 0, 0);
        var release = Task.Run(async () =>
        {
            await Task.Delay(200);
            gate.SetResult();
        });
        var back = new byte[data.Length];
        Assert.Equal(0u, await c.ReadStructuredReadAsync(10, Gate, back));
        Assert.Equal(data, back);
        Assert.True(await c.IsClosedByServerAsync(TimeSpan.FromSeconds(10)));
        await release;
    }

    [Fact]
    public async Task Random_pipelined_bursts_of_mixed_requests_match_a_model()
    {
        var seed = Tools.Seed(output);
        var random = new Random(seed);
        await using var s = await TestServer.StartAsync(null, ("disk", Size));
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await c.NegotiateAsync("disk");
        var model = new byte[Size];
        const int slot = 1 << 20;
        for (var burst = 0; burst < 25; burst++)
        {
            // Requests of one burst touch disjoint ranges (one per 1 MiB slot), as a client must for requests in
            // flight together; some are longer than the server's receive buffer.
            var slots = Enumerable.Range(0, (int)(Size / slot)).OrderBy(_ => random.Next()).Take(random.Next(1, 17)).ToList();
            var wire = new MemoryStream();
            var expected = new Dictionary<ulong, (NbdCommand Command, long Offset, byte[]? Data)>();
            var after = (byte[])model.Clone();
            foreach (var (sl, i) in slots.Select((x, i) => (x, i)))
            {
                var cookie = ((ulong)burst << 32) | (uint)i;
                var length = random.Next(4) == 0 ? slot : random.Next(1, slot / (random.Next(2) == 0 ? 1 : 64));
                var offset = ((long)sl * slot) + random.Next(0, slot - length + 1);
                switch (random.Next(6))
                {
                    case 0 or 1:
                        var data = new byte[length];
                        random.NextBytes(data);
                        var fua = random.Next(4) == 0 ? CommandFlags.Fua : 0;
                        wire.Write(RawNbdClient.Request(NbdCommand.Write, cookie, (ulong)offset, (uint)length, fua));
                        wire.Write(data);
                        data.CopyTo(after, offset);
                        expected[cookie] = (NbdCommand.Write, offset, null);
                        break;
                    case 2 or 3:
                        // DF sometimes: then the data comes in one chunk even over holes.
                        wire.Write(RawNbdClient.Request(NbdCommand.Read, cookie, (ulong)offset, (uint)length, random.Next(2) == 0 ? CommandFlags.Df : 0));
                        expected[cookie] = (NbdCommand.Read, offset, model.AsSpan((int)offset, length).ToArray());
                        break;
                    case 4:
                        var noHole = random.Next(2) == 0 ? CommandFlags.NoHole : 0;
                        wire.Write(RawNbdClient.Request(NbdCommand.WriteZeroes, cookie, (ulong)offset, (uint)length, noHole));
                        after.AsSpan((int)offset, length).Clear();
                        expected[cookie] = (NbdCommand.WriteZeroes, offset, null);
                        break;
                    default:
                        wire.Write(RawNbdClient.Request(NbdCommand.Flush, cookie, 0, 0));
                        expected[cookie] = (NbdCommand.Flush, 0, null);
                        break;
                }
            }
            // The burst goes out in random fragments (headers and payloads split anywhere) while replies are read.
            var bytes = wire.ToArray();
            var fragments = new List<int>();
            for (var p = 0; p < bytes.Length;)
            {
                var n = Math.Min(bytes.Length - p, random.Next(1, 3) == 1 ? random.Next(1, 64) : random.Next(1, 300_000));
                fragments.Add(n);
                p += n;
            }
            var sender = Task.Run(async () =>
            {
                var p = 0;
                foreach (var n in fragments)
                {
                    await c.Stream.WriteAsync(bytes.AsMemory(p, n));
                    p += n;
                }
            });
            while (expected.Count > 0)
            {
                var r = await c.ReadReplyAsync();
                Assert.True(expected.Remove(r.Cookie, out var e), $"seed {seed}: reply for cookie {r.Cookie:x} not expected (or answered twice)");
                if (e.Command != NbdCommand.Read)
                {
                    Assert.Equal(0u, r.ErrorValue);
                    Assert.True(r.Done);
                    continue;
                }
                var got = new byte[e.Data!.Length];
                for (var chunk = r; ; chunk = await c.ReadReplyAsync())
                {
                    Assert.Equal(r.Cookie, chunk.Cookie);
                    Assert.Equal(0u, chunk.ErrorValue);
                    var at = chunk.Type is ReplyChunkType.OffsetData or ReplyChunkType.OffsetHole
                        ? (int)((long)BinaryPrimitives.ReadUInt64BigEndian(chunk.Payload) - e.Offset)
                        : 0;
                    if (chunk.Type == ReplyChunkType.OffsetData)
                    {
                        chunk.Payload.AsSpan(8).CopyTo(got.AsSpan(at));
                    }
                    else if (chunk.Type == ReplyChunkType.OffsetHole)
                    {
                        got.AsSpan(at, (int)BinaryPrimitives.ReadUInt32BigEndian(chunk.Payload.AsSpan(8))).Clear();
                    }
                    if (chunk.Done)
                    {
                        break;
                    }
                }
                Assert.True(e.Data.AsSpan().SequenceEqual(got), $"seed {seed}: read of {e.Data.Length} bytes at {e.Offset} differs from the model");
            }
            await sender;
            model = after;
        }
        // The whole image, read back, is the model.
        for (long p = 0; p < Size; p += slot)
        {
            await c.SendRequestAsync(NbdCommand.Read, 1, (ulong)p, slot);
            var back = new byte[slot];
            Assert.Equal(0u, await c.ReadStructuredReadAsync(1, (ulong)p, back));
            Assert.True(model.AsSpan((int)p, slot).SequenceEqual(back), $"seed {seed}: image differs from the model in the MiB at {p}");
        }
    }

    [Fact]
    public async Task A_client_that_pipelines_without_reading_is_held_to_the_request_limit()
    {
        const int limit = 8;
        await using var s = await TestServer.StartAsync(
            (cat, log) => new NbdServerOptions { Catalog = cat, Log = log, MaxRequestsInFlight = limit, ReplyStallTimeout = TimeSpan.FromSeconds(2) },
            ("disk", Size));
        await using var hog = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        hog.Socket.ReceiveBufferSize = 4096;
        await hog.NegotiateAsync("disk");
        // 40,000 requests and not one reply read: refusals (unknown command, each answered with an error chunk)
        // mixed with small reads. Sending blocks once the server stops reading.
        var burst = new MemoryStream();
        for (var i = 0; i < 20_000; i++)
        {
            burst.Write(RawNbdClient.Request((NbdCommand)77, (ulong)i, 0, 0));
            burst.Write(RawNbdClient.Request(NbdCommand.Read, (ulong)i, (ulong)(i % 1000) * 4096, 4096));
        }
        var sender = Task.Run(async () =>
        {
            try
            {
                await hog.Stream.WriteAsync(burst.ToArray());
            }
            catch (IOException)
            {
            }
        });
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (s.Server.ActiveConnections > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
        }
        Assert.True(s.Server.ActiveConnections == 0, $"still {s.Server.ActiveConnections} connections; log:\n{Tools.Describe(s.Log)}");
        Assert.Contains(s.Log, l => l.Contains("has not read its replies", StringComparison.Ordinal));
        Assert.InRange(s.Server.HighWaterRepliesHeld, 1, limit);
        await sender.WaitAsync(TimeSpan.FromSeconds(30));

        // Other clients are served as before.
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await c.NegotiateAsync("disk");
        await c.SendRequestAsync(NbdCommand.Read, 1, 0, 4096);
        Assert.Equal(0u, await c.ReadStructuredReadAsync(1, 0, new byte[4096]));
    }

    /// <summary>Serves the real local images; reads that cover <see cref="Gate"/> wait for the gate first.</summary>
    private sealed class GatedCatalog(LocalImageStore inner, Func<Task> gate) : IImageCatalog
    {
        public ValueTask<IReadOnlyList<string>> ListNamesAsync(CancellationToken ct) => ValueTask.FromResult(inner.ListNames());

        public ValueTask<bool> ExistsAsync(string name, CancellationToken ct) => ValueTask.FromResult(inner.ListNames().Contains(name));

        public ValueTask<string?> DescribeAsync(string name, CancellationToken ct) => ValueTask.FromResult<string?>(null);

        public ValueTask<ImageOpenResult> OpenAsync(string name, bool readOnly, CancellationToken ct) =>
            ValueTask.FromResult(inner.TryOpen(name, readOnly) is { } image ? ImageOpenResult.Opened(new GatedImage(image, gate)) : ImageOpenResult.NotFound);
    }

    private sealed class GatedImage(IImage inner, Func<Task> gate) : IImage
    {
        public string Name => inner.Name;

        public long Size => inner.Size;

        public bool IsReadOnly => inner.IsReadOnly;

        public bool FlushCoversAllWriters => inner.FlushCoversAllWriters;

        public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct)
        {
            if (offset <= Gate && Gate < offset + destination.Length)
            {
                await gate().WaitAsync(ct);
            }
            await inner.ReadAsync(offset, destination, ct);
        }

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, bool fua, CancellationToken ct) => inner.WriteAsync(offset, source, fua, ct);

        public ValueTask FlushAsync(CancellationToken ct) => inner.FlushAsync(ct);

        public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken ct) => inner.TrimAsync(offset, length, fua, ct);

        public ValueTask<bool> ZeroAsync(long offset, long length, ZeroOptions options, bool fua, CancellationToken ct) => inner.ZeroAsync(offset, length, options, fua, ct);

        public ValueTask<int> GetExtentsAsync(long offset, long length, Memory<ImageExtent> destination, CancellationToken ct) => inner.GetExtentsAsync(offset, length, destination, ct);

        public ValueTask CacheAsync(long offset, long length, CancellationToken ct) => inner.CacheAsync(offset, length, ct);

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
