using System.Globalization;
using System.Text.RegularExpressions;
using Appliance.Cli.Common;
using Appliance.Tests.Support;
using Xunit.Abstractions;

namespace Appliance.Cli.Tests;

/// <summary>A cluster for the object command tests: three monitors and three OSD daemons in this process, with the
/// pools the tests use (each test its own, so listings are exact).</summary>
public sealed class ObjectClusterFixture : IAsyncLifetime
{
    internal LoopbackCluster Cluster { get; } = new();

    public Task InitializeAsync() => Cluster.StartWithPoolsAsync(["objects", "bench", "guarded", "changing"], pgNum: 8);

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

/// <summary>`appliance object ...` run in-process (<see cref="CliApp.RunAsync"/>) against a real cluster, as a user
/// would with CONF_DIR and a keyring.</summary>
public sealed class ObjectCommandTests(ObjectClusterFixture fixture, ITestOutputHelper output) : IClassFixture<ObjectClusterFixture>
{
    private readonly LoopbackCluster _cluster = fixture.Cluster;

    private async Task<(int Code, string Out, string Err)> RunAsync(string[] args, Stream? stdin = null, Stream? stdout = null)
    {
        // Bytes through BinaryStdio in this flow only; text through the writers.
        BinaryStdio.Redirect(stdin ?? Stream.Null, stdout ?? Stream.Null);
        var o = new StringWriter();
        var e = new StringWriter();
        var code = await CliApp.RunAsync([.. args, "--conf-dir", _cluster.ConfDir], o, e);
        output.WriteLine($"appliance {string.Join(' ', args)} -> {code}{(e.ToString().Length > 0 ? ": " + e.ToString().Trim() : "")}");
        if (o.ToString().Length is > 0 and < 2000)
        {
            output.WriteLine(o.ToString().TrimEnd());
        }
        return (code, o.ToString(), e.ToString());
    }

    private async Task<string> OkAsync(params string[] args)
    {
        var (code, stdout, stderr) = await RunAsync(args);
        Assert.True(code == ExitCodes.Ok, $"appliance {string.Join(' ', args)} exited {code}: {stderr}");
        return stdout;
    }

    private int Seed() => TestSeed.Get(nameof(ObjectCommandTests), output);

    [Fact]
    public async Task Put_get_stat_ls_and_rm_keep_every_byte_and_a_removed_object_is_not_found()
    {
        var rng = new Random(Seed());
        using var dir = new TempDir();
        // Empty, one byte, exactly one piece, more than one piece (written and read in 8 MiB pieces), random.
        int[] sizes = [0, 1, 8 << 20, (8 << 20) + 1 + rng.Next(4 << 20), rng.Next(1, 200_000), rng.Next(1, 3 << 20)];
        var expected = new Dictionary<string, byte[]>();
        for (var i = 0; i < sizes.Length; i++)
        {
            var data = new byte[sizes[i]];
            rng.NextBytes(data);
            var name = $"file-{i}-{sizes[i]}";
            var path = dir.File(name);
            await File.WriteAllBytesAsync(path, data);
            await OkAsync("object", "put", "objects", name, path);
            expected[name] = data;
        }
        // From standard input, over one piece.
        var piped = new byte[(8 << 20) + 12345];
        rng.NextBytes(piped);
        var (putCode, _, putErr) = await RunAsync(["object", "put", "objects", "piped"], stdin: new MemoryStream(piped));
        Assert.True(putCode == ExitCodes.Ok, putErr);
        expected["piped"] = piped;

        foreach (var (name, data) in expected)
        {
            var back = dir.File(name + ".back");
            await OkAsync("object", "get", "objects", name, back);
            var got = await File.ReadAllBytesAsync(back);
            Assert.True(data.AsSpan().SequenceEqual(got), $"{name}: the file got back differs");
            var stdout = new MemoryStream();
            var (code, _, err) = await RunAsync(["object", "get", "objects", name, "-"], stdout: stdout);
            Assert.True(code == ExitCodes.Ok, err);
            Assert.True(data.AsSpan().SequenceEqual(stdout.ToArray()), $"{name}: standard output differs");

            var stat = await OkAsync("object", "stat", "objects", name);
            Assert.Contains($"size {data.Length}\n", stat.ReplaceLineEndings("\n"));
            Assert.Matches(@"(?m)^modified \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", stat.ReplaceLineEndings("\n"));
            Assert.True(ulong.Parse(Regex.Match(stat, @"(?m)^version (\d+)\r?$").Groups[1].Value, CultureInfo.InvariantCulture) > 0);
        }

        var listed = (await OkAsync("object", "ls", "objects")).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), listed.Order(StringComparer.Ordinal));

        // Overwritten with a shorter object: nothing of the longer one is left.
        var shorter = new byte[100];
        rng.NextBytes(shorter);
        var large = expected.Keys.First(k => expected[k].Length > 8 << 20);
        await File.WriteAllBytesAsync(dir.File("shorter"), shorter);
        await OkAsync("object", "put", "objects", large, dir.File("shorter"));
        await OkAsync("object", "get", "objects", large, dir.File("shorter.back"));
        Assert.Equal(shorter, await File.ReadAllBytesAsync(dir.File("shorter.back")));

        await OkAsync("object", "rm", "objects", "file-1-1");
        var missing = dir.File("missing.back");
        var (getCode, _, getErr) = await RunAsync(["object", "get", "objects", "file-1-1", missing]);
        Assert.Equal(ExitCodes.NotFound, getCode);
        Assert.Contains("object file-1-1 does not exist", getErr);
        Assert.Contains("appliance object ls", getErr);
        Assert.False(File.Exists(missing), "a failed get left a file");
        Assert.Equal(ExitCodes.NotFound, (await RunAsync(["object", "rm", "objects", "file-1-1"])).Code);
        Assert.Equal(ExitCodes.NotFound, (await RunAsync(["object", "stat", "objects", "file-1-1"])).Code);
        Assert.DoesNotContain("file-1-1", await OkAsync("object", "ls", "objects"));
    }

    [Fact]
    public async Task A_get_fails_when_another_client_changes_the_object_between_its_pieces()
    {
        using var dir = new TempDir();
        var rng = new Random(Seed());
        var first = new byte[(8 << 20) + 4096];
        var second = new byte[(8 << 20) + 4096];
        rng.NextBytes(first);
        rng.NextBytes(second);
        await File.WriteAllBytesAsync(dir.File("first"), first);
        await File.WriteAllBytesAsync(dir.File("second"), second);
        await OkAsync("object", "put", "changing", "o", dir.File("first"));

        // The get's first 8 MiB reach standard output; before it reads on, another put replaces the object.
        var stdout = new ChangeOnFirstWrite(() => OkAsync("object", "put", "changing", "o", dir.File("second")));
        var (code, _, err) = await RunAsync(["object", "get", "changing", "o"], stdout: stdout);
        Assert.True(stdout.Changed);
        Assert.Equal(ExitCodes.Failure, code);
        Assert.Contains("changed by another client", err);
        Assert.Equal(8 << 20, stdout.Written); // the first piece only: nothing of the second object follows it

        await OkAsync("object", "get", "changing", "o", dir.File("back"));
        var back = await File.ReadAllBytesAsync(dir.File("back"));
        Assert.True(second.AsSpan().SequenceEqual(back), "the object is not the second put's");
    }

    /// <summary>Standard output that runs <paramref name="change"/> when the first bytes arrive, and counts them.</summary>
    private sealed class ChangeOnFirstWrite(Func<Task> change) : Stream
    {
        public bool Changed { get; private set; }
        public long Written { get; private set; }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Written += buffer.Length;
            if (!Changed)
            {
                Changed = true;
                await change();
            }
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => Written;
        public override long Position { get => Written; set => throw new NotSupportedException(); }
        public override void Flush()
        {
        }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    [Fact]
    public async Task A_pool_that_does_not_exist_is_not_found_and_says_how_to_list_pools()
    {
        using var dir = new TempDir();
        await File.WriteAllBytesAsync(dir.File("f"), [1, 2, 3]);
        foreach (var args in new[] { new[] { "object", "ls", "nopool" }, ["object", "put", "nopool", "x", dir.File("f")], ["object", "get", "nopool", "x", dir.File("g")] })
        {
            var (code, _, err) = await RunAsync(args);
            Assert.Equal(ExitCodes.NotFound, code);
            Assert.Contains("pool nopool does not exist", err);
            Assert.Contains("appliance pool ls", err);
        }
    }

    [Fact]
    public async Task A_file_larger_than_an_object_holds_is_refused_before_anything_is_written()
    {
        using var dir = new TempDir();
        var path = dir.File("huge");
        await using (var f = new FileStream(path, FileMode.CreateNew))
        {
            f.SetLength((128L << 20) + 1);
        }
        var (code, _, err) = await RunAsync(["object", "put", "objects", "huge", path]);
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("at most 128 MiB", err);
        Assert.Equal(ExitCodes.NotFound, (await RunAsync(["object", "stat", "objects", "huge"])).Code);
        Assert.Equal(ExitCodes.NotFound, (await RunAsync(["object", "put", "objects", "x", dir.File("no-such-file")])).Code);
    }

    [Fact]
    public async Task A_read_only_client_can_get_but_cannot_put_or_rm()
    {
        using var dir = new TempDir();
        var original = "the original"u8.ToArray();
        await File.WriteAllBytesAsync(dir.File("original"), original);
        await OkAsync("object", "put", "guarded", "kept", dir.File("original"));
        var keyring = await OkAsync("auth", "add", "client.ro", "mon", "allow r", "osd", "allow r");
        await File.WriteAllTextAsync(Path.Combine(_cluster.ConfDir, "client.ro.keyring"), keyring);

        await OkAsync("object", "get", "guarded", "kept", dir.File("read"), "--id", "client.ro");
        Assert.Equal(original, await File.ReadAllBytesAsync(dir.File("read")));

        await File.WriteAllBytesAsync(dir.File("other"), "something else"u8.ToArray());
        var (code, _, err) = await RunAsync(["object", "put", "guarded", "kept", dir.File("other"), "--id", "client.ro"]);
        Assert.Equal(ExitCodes.PermissionDenied, code);
        Assert.Contains("client.ro", err);
        Assert.Contains("auth caps", err);
        Assert.Equal(ExitCodes.PermissionDenied, (await RunAsync(["object", "put", "guarded", "new", dir.File("other"), "--id", "client.ro"])).Code);
        Assert.Equal(ExitCodes.PermissionDenied, (await RunAsync(["object", "rm", "guarded", "kept", "--id", "client.ro"])).Code);
        // A bench in which every write is refused says why with the same code (and records no run).
        Assert.Equal(ExitCodes.PermissionDenied, (await RunAsync(["object", "bench", "guarded", "--op", "write", "--seconds", "1", "--threads", "2", "--id", "client.ro"])).Code);

        // Nothing changed: the object holds what it held, and no other appeared.
        await OkAsync("object", "get", "guarded", "kept", dir.File("after"));
        Assert.Equal(original, await File.ReadAllBytesAsync(dir.File("after")));
        Assert.Equal(["kept"], (await OkAsync("object", "ls", "guarded")).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    private static void AssertFigures(string stdout)
    {
        var text = stdout.ReplaceLineEndings("\n");
        foreach (var line in new[] { "ops", "errors", "seconds", "IOPS", "MB/s", "p50 latency ms", "p99 latency ms" })
        {
            var m = Regex.Match(text, $"(?m)^{Regex.Escape(line)}: (\\S+)$");
            Assert.True(m.Success, $"no '{line}:' line in:\n{stdout}");
            Assert.True(double.TryParse(m.Groups[1].Value, NumberStyles.Float, CultureInfo.InvariantCulture, out _), $"'{line}: {m.Groups[1].Value}' is not a number");
        }
        Assert.Equal("0", Regex.Match(text, "(?m)^errors: (\\S+)$").Groups[1].Value);
    }

    [Fact]
    public async Task Bench_writes_then_reads_back_and_prints_the_figures_and_cleanup_removes_its_objects()
    {
        var (noCode, _, noErr) = await RunAsync(["object", "bench", "bench", "--op", "read", "--seconds", "1"]);
        Assert.Equal(ExitCodes.NotFound, noCode);
        Assert.Contains("--op write", noErr);

        var write = await OkAsync("object", "bench", "bench", "--op", "write", "--size", "4K", "--threads", "4", "--seconds", "2");
        AssertFigures(write);
        Assert.Contains("kept", write);
        var written = long.Parse(Regex.Match(write, @"(?m)^ops: (\d+)\r?$").Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.True(written > 0);
        var names = (await OkAsync("object", "ls", "bench")).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(written + 1, names.Length); // and bench_last_run
        Assert.Contains("bench_last_run", names);

        AssertFigures(await OkAsync("object", "bench", "bench", "--op", "randread", "--threads", "4", "--seconds", "2"));
        var read = await OkAsync("object", "bench", "bench", "--op", "read", "--threads", "4", "--seconds", "2", "--cleanup");
        AssertFigures(read);
        Assert.Contains("removed", read);
        Assert.Equal("", (await OkAsync("object", "ls", "bench")).Trim());

        Assert.Equal(ExitCodes.Usage, (await RunAsync(["object", "bench", "bench", "--op", "scribble"])).Code);
        Assert.Equal(ExitCodes.Usage, (await RunAsync(["object", "bench", "bench", "--size", "9M"])).Code);
    }
}

public sealed class LatencyHistogramTests
{
    [Fact]
    public void Percentiles_are_within_the_buckets_precision()
    {
        var h = new LatencyHistogram();
        Assert.Equal(0, h.Percentile(50));
        for (var v = 1; v <= 100_000; v++)
        {
            h.Record(v);
        }
        Assert.Equal(100_000, h.Count);
        Assert.InRange(h.Percentile(50), 50_000 * 0.97, 50_000 * 1.03);
        Assert.InRange(h.Percentile(99), 99_000 * 0.97, 99_000 * 1.03);
        Assert.InRange(h.Percentile(100), 100_000 * 0.97, 100_000 * 1.03);
    }

    [Fact]
    public void Small_values_are_exact_and_one_outlier_moves_only_the_top()
    {
        var h = new LatencyHistogram();
        for (var i = 0; i < 99; i++)
        {
            h.Record(10);
        }
        h.Record(5_000_000);
        Assert.Equal(10, h.Percentile(50));
        Assert.Equal(10, h.Percentile(99));
        Assert.InRange(h.Percentile(100), 5_000_000 * 0.97, 5_000_000 * 1.03);
    }
}
