using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using Appliance.Cli.Common;
using Appliance.Client;
using Appliance.Osd.Protocol;

namespace Appliance.Cli.Commands;

/// <summary>
/// `object put|get|stat|ls|rm|bench`: a pool's objects through the cluster client (node/Client), as `rados` does.
/// Every command authenticates as --id with its keyring, as the monitor commands do; the client's errors become
/// exit codes in <see cref="CliApp"/>.
/// </summary>
public static class ObjectCommands
{
    /// <summary>The most one request writes or reads: under the messenger's 16 MiB frame with room to spare
    /// (<see cref="Limits.MaxPayload"/> is 15 MiB).</summary>
    internal const int Piece = 8 << 20;

    /// <summary>The object a bench write run leaves beside its objects, naming them for a later read run (rados
    /// bench's benchmark_last_metadata).</summary>
    internal const string BenchMetadata = "bench_last_run";

    public static Command Create()
    {
        var obj = new Command("object", "Store, read, list and remove a pool's objects, and measure the cluster (object bench).");
        MonitorCommands.AddCommon(obj);
        obj.Subcommands.Add(Put());
        obj.Subcommands.Add(Get());
        obj.Subcommands.Add(Stat());
        obj.Subcommands.Add(Ls());
        obj.Subcommands.Add(Rm());
        obj.Subcommands.Add(Bench());
        return obj;
    }

    private static Argument<string> PoolArg() => new("pool") { Description = "The pool." };

    private static Argument<string> NameArg() => new("name") { Description = "The object's name." };

    /// <summary>The cluster client for this command: the monitors of CONF_DIR/cluster.conf, --id with its keyring,
    /// --timeout for the first osdmap and for each request.</summary>
    internal static async Task<ClusterClient> ConnectAsync(ParseResult parse, CancellationToken ct, TimeSpan? opTimeout = null)
    {
        var conf = MonitorCommands.LoadConf(parse);
        var entity = parse.GetValue(MonitorCommands.Entity) ?? "client.admin";
        var key = MonitorCommands.LoadKey(parse, entity);
        var timeout = MonitorCommands.TimeoutOf(parse);
        var options = new ClusterClientOptions { ConnectTimeout = timeout, OpTimeout = opTimeout ?? timeout };
        return await ClusterClient.ConnectAsync(conf.Monitors.Select(m => IPEndPoint.Parse(m.Address)), entity, key.Key, options, ct);
    }

    private static string CheckName(string name) =>
        Limits.CheckObjectName(name) is { } bad ? throw new CliException(ExitCodes.InvalidInput, $"object name '{name}': {bad}") : name;

    private static Command Put()
    {
        var pool = PoolArg();
        var name = NameArg();
        var file = new Argument<string>("file") { Description = "The file to store; - or nothing: standard input.", Arity = ArgumentArity.ZeroOrOne };
        var put = new Command("put",
            "Store a file (or standard input) as an object, replacing the object whole. Objects hold at most 128 MiB. " +
            "Up to 8 MiB a put is atomic; a larger one is written in 8 MiB pieces, so a reader may see the object " +
            "part-written until the put ends, and a put that fails part-way leaves it so (run it again).") { pool, name, file };
        put.SetAction(async (parse, ct) =>
        {
            var objectName = CheckName(parse.GetRequiredValue(name));
            // The input first: a missing file, or one past the object limit, changes nothing in the cluster.
            await using var input = await OpenInputAsync(parse.GetValue(file), ct);
            await using var cluster = await ConnectAsync(parse, ct);
            var io = cluster.OpenPool(parse.GetRequiredValue(pool));
            var length = input.Length;
            var buffer = new byte[(int)Math.Min(Piece, length)];
            long offset = 0;
            ulong version = 0;
            do
            {
                var n = await input.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, ct);
                if (n == 0 && offset > 0)
                {
                    break; // the file shrank while we read it: what was there is stored
                }
                var data = buffer.AsMemory(0, n);
                // Each piece after the first asserts the version the previous one made: another writer in between
                // fails the put (GuardFailedException) instead of leaving a mix of both objects unnoticed.
                var reply = offset == 0
                    ? await io.ExecuteAsync(objectName, [OsdOp.WriteFull(data)], null, ct)
                    : await io.ExecuteAsync(objectName, [OsdOp.AssertVersion(version), OsdOp.Write((ulong)offset, data)], null, ct);
                version = reply.ObjectVersion;
                offset += n;
            }
            while (offset < length);
            return ExitCodes.Ok;
        });
        return put;
    }

    /// <summary>The file to put, or standard input read whole (so one past the limit is refused before anything
    /// is written); its length is known either way.</summary>
    private static async Task<Stream> OpenInputAsync(string? path, CancellationToken ct)
    {
        if (path is null or "-")
        {
            var memory = new MemoryStream();
            var stdin = BinaryStdio.Input;
            var chunk = new byte[1 << 20];
            int n;
            while ((n = await stdin.ReadAsync(chunk, ct)) > 0)
            {
                if (memory.Length + n > Limits.MaxObjectSize)
                {
                    throw new CliException(ExitCodes.InvalidInput, $"standard input holds more than {Limits.MaxObjectSize >> 20} MiB, the most an object holds; split it into several objects");
                }
                memory.Write(chunk, 0, n);
            }
            memory.Position = 0;
            return memory;
        }
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, useAsync: true);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new CliException(ExitCodes.NotFound, $"no file {path} to put");
        }
        catch (UnauthorizedAccessException)
        {
            throw new CliException(ExitCodes.PermissionDenied, $"cannot read {path}: run as a user that may read it");
        }
        if (stream.Length > Limits.MaxObjectSize)
        {
            var size = stream.Length;
            await stream.DisposeAsync();
            throw new CliException(ExitCodes.InvalidInput, $"{path} is {ByteSize.Format(size)}; an object holds at most {Limits.MaxObjectSize >> 20} MiB: split it (split -b 128M) into several objects");
        }
        return stream;
    }

    private static Command Get()
    {
        var pool = PoolArg();
        var name = NameArg();
        var file = new Argument<string>("file") { Description = "Where to write it; - or nothing: standard output.", Arity = ArgumentArity.ZeroOrOne };
        var get = new Command("get",
            "Read an object into a file (replaced only once the whole object is read) or to standard output, in 8 MiB " +
            "pieces; an object changed by another client during the read fails the get instead of mixing versions.") { pool, name, file };
        get.SetAction(async (parse, ct) =>
        {
            var objectName = CheckName(parse.GetRequiredValue(name));
            var path = parse.GetValue(file);
            await using var cluster = await ConnectAsync(parse, ct);
            var io = cluster.OpenPool(parse.GetRequiredValue(pool));
            // The first piece before any file is made: a missing object leaves no empty file behind.
            var reply = await io.ExecuteAsync(objectName, [OsdOp.Read(0, Piece)], null, ct);
            var version = reply.ObjectVersion;
            var first = reply.Outputs[0].Data;
            if (path is null or "-")
            {
                var stdout = BinaryStdio.Output;
                await ReadRestAsync(io, objectName, version, first, stdout, ct);
                await stdout.FlushAsync(ct);
                return ExitCodes.Ok;
            }
            var full = Path.GetFullPath(path);
            var temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.part");
            try
            {
                await using (var output = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1, useAsync: true))
                {
                    await ReadRestAsync(io, objectName, version, first, output, ct);
                }
                File.Move(temp, full, overwrite: true);
            }
            catch (DirectoryNotFoundException)
            {
                throw new CliException(ExitCodes.NotFound, $"no directory {Path.GetDirectoryName(full)} to write {path} in");
            }
            catch (UnauthorizedAccessException)
            {
                throw new CliException(ExitCodes.PermissionDenied, $"cannot write {path}: run as a user that may write there");
            }
            finally
            {
                if (File.Exists(temp))
                {
                    File.Delete(temp); // the get failed part-way: no partial file is left
                }
            }
            return ExitCodes.Ok;
        });
        return get;
    }

    /// <summary>Writes <paramref name="first"/> and the pieces after it, each read asserting the version the first
    /// read saw.</summary>
    private static async Task ReadRestAsync(IoContext io, string name, ulong version, ReadOnlyMemory<byte> first, Stream output, CancellationToken ct)
    {
        await output.WriteAsync(first, ct);
        var offset = (ulong)first.Length;
        var last = first.Length;
        while (last == Piece)
        {
            var reply = await io.ExecuteAsync(name, [OsdOp.AssertVersion(version), OsdOp.Read(offset, Piece)], null, ct);
            var data = reply.Outputs[1].Data;
            await output.WriteAsync(data, ct);
            offset += (ulong)data.Length;
            last = data.Length;
        }
    }

    private static Command Stat()
    {
        var pool = PoolArg();
        var name = NameArg();
        var stat = new Command("stat", "Print an object's size in bytes, when it was last changed (UTC) and its version, one `key value` a line.") { pool, name };
        stat.SetAction(async (parse, ct) =>
        {
            var objectName = CheckName(parse.GetRequiredValue(name));
            await using var cluster = await ConnectAsync(parse, ct);
            var io = cluster.OpenPool(parse.GetRequiredValue(pool));
            var s = await io.StatAsync(objectName, ct);
            var o = parse.InvocationConfiguration.Output;
            await o.WriteLineAsync($"object {io.PoolName}/{objectName}");
            await o.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"size {s.Size}"));
            await o.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"modified {s.Modified.UtcDateTime:yyyy-MM-ddTHH:mm:ss.fffZ}"));
            await o.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"version {s.Version}"));
            return ExitCodes.Ok;
        });
        return stat;
    }

    private static Command Ls()
    {
        var pool = PoolArg();
        var ls = new Command("ls", "List a pool's objects, one name a line (PG by PG, a page at a time; not sorted).") { pool };
        ls.SetAction(async (parse, ct) =>
        {
            await using var cluster = await ConnectAsync(parse, ct);
            var io = cluster.OpenPool(parse.GetRequiredValue(pool));
            var o = parse.InvocationConfiguration.Output;
            await foreach (var objectName in io.ListObjectsAsync(ct: ct))
            {
                await o.WriteLineAsync(objectName);
            }
            return ExitCodes.Ok;
        });
        return ls;
    }

    private static Command Rm()
    {
        var pool = PoolArg();
        var name = NameArg();
        var rm = new Command("rm", "Remove an object.") { pool, name };
        rm.SetAction(async (parse, ct) =>
        {
            var objectName = CheckName(parse.GetRequiredValue(name));
            await using var cluster = await ConnectAsync(parse, ct);
            await cluster.OpenPool(parse.GetRequiredValue(pool)).RemoveAsync(objectName, ct);
            return ExitCodes.Ok;
        });
        return rm;
    }

    private enum BenchOp
    {
        Write,
        Read,
        RandRead,
    }

    private static Command Bench()
    {
        var pool = PoolArg();
        var op = new Option<string>("--op") { Description = "write (new objects bench_PID_N), read (the objects the last write run left, in order, each once) or randread (them at random).", DefaultValueFactory = _ => "write" };
        var size = new Option<string>("--size") { Description = "Object size for write, e.g. 4K or 4M (at most 8M). Default 4K.", DefaultValueFactory = _ => "4K" };
        var threads = new Option<int>("--threads") { Description = "Requests in flight. Default 16.", DefaultValueFactory = _ => 16 };
        var seconds = new Option<double>("--seconds") { Description = "How long to run. Default 20.", DefaultValueFactory = _ => 20 };
        var objects = new Option<long>("--objects") { Description = "write: stop after this many objects; read, randread: use only the first this many. Default: no limit." };
        var cleanup = new Option<bool>("--cleanup") { Description = "Remove the bench objects afterwards (default: keep them, so a read run can follow)." };
        var bench = new Command("bench",
            "Measure the cluster as `rados bench` does: IOPS, MB/s (10^6 bytes), p50 and p99 latency, errors. A write run " +
            $"leaves its objects and {BenchMetadata} (naming them) in the pool for read and randread runs; --cleanup removes them.")
            { pool, op, size, threads, seconds, objects, cleanup };
        bench.SetAction(async (parse, ct) =>
        {
            var kind = parse.GetRequiredValue(op).ToLowerInvariant() switch
            {
                "write" => BenchOp.Write,
                "read" or "seq" => BenchOp.Read,
                "randread" or "rand" => BenchOp.RandRead,
                var other => throw new CliException(ExitCodes.Usage, $"--op {other}: write, read or randread"),
            };
            var objectSize = ByteSize.Parse(parse.GetRequiredValue(size), "--size");
            if (objectSize is < 1 or > Piece)
            {
                throw new CliException(ExitCodes.Usage, $"--size {parse.GetRequiredValue(size)}: between 1 byte and 8M");
            }
            var inFlight = parse.GetValue(threads);
            if (inFlight is < 1 or > 4096)
            {
                throw new CliException(ExitCodes.Usage, $"--threads {inFlight}: between 1 and 4096");
            }
            var duration = parse.GetValue(seconds);
            if (duration is <= 0 or > 86400)
            {
                throw new CliException(ExitCodes.Usage, $"--seconds {duration}: more than 0 and at most 86400");
            }
            var limit = parse.GetValue(objects);
            if (limit < 0)
            {
                throw new CliException(ExitCodes.Usage, $"--objects {limit}: 0 (no limit) or more");
            }
            var o = parse.InvocationConfiguration.Output;
            await using var cluster = await ConnectAsync(parse, ct);
            var io = cluster.OpenPool(parse.GetRequiredValue(pool));

            string prefix;
            long count;
            if (kind == BenchOp.Write)
            {
                prefix = $"bench_{Environment.ProcessId}_";
                count = limit;
            }
            else
            {
                (prefix, count, objectSize) = await ReadMetadataAsync(io, ct);
                count = limit > 0 ? Math.Min(limit, count) : count;
            }
            await o.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"bench {kind.ToString().ToLowerInvariant()} on pool {io.PoolName}: {ByteSize.Format(objectSize)} objects, {inFlight} in flight, {duration:0.###} s"));

            var run = await RunBenchAsync(io, kind, prefix, count, (int)objectSize, inFlight, TimeSpan.FromSeconds(duration), ct);
            var secs = Math.Max(run.Elapsed.TotalSeconds, 1e-9);
            await o.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"ops: {run.Latency.Count}"));
            await o.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"errors: {run.Errors}"));
            await o.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"seconds: {secs:0.000}"));
            await o.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"IOPS: {run.Latency.Count / secs:0.0}"));
            await o.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"MB/s: {run.Latency.Count * (double)objectSize / secs / 1e6:0.00}"));
            await o.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"p50 latency ms: {run.Latency.Percentile(50) / 1000:0.000}"));
            await o.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"p99 latency ms: {run.Latency.Percentile(99) / 1000:0.000}"));
            if (run.Latency.Count == 0 && run.FirstError is not null)
            {
                // Not one operation succeeded: the error says why (a missing permission, a full cluster) and its
                // exit code is the command's.
                throw run.FirstError;
            }

            var written = kind == BenchOp.Write ? run.Names : count;
            if (parse.GetValue(cleanup))
            {
                await RemoveBenchObjectsAsync(io, prefix, written, inFlight, ct);
                await o.WriteLineAsync($"removed {written} objects {prefix}* and {BenchMetadata}");
            }
            else
            {
                if (kind == BenchOp.Write)
                {
                    var meta = string.Create(CultureInfo.InvariantCulture, $"prefix {prefix}\nobjects {written}\nsize {objectSize}\n");
                    await io.WriteFullAsync(BenchMetadata, Encoding.UTF8.GetBytes(meta), ct);
                }
                await o.WriteLineAsync($"kept {written} objects {prefix}* and {BenchMetadata}: `appliance object bench {io.PoolName} --op read` or `--op randread` reads them, `--cleanup` removes them");
            }
            return ExitCodes.Ok;
        });
        return bench;
    }

    private sealed record BenchRun(LatencyHistogram Latency, long Errors, long Names, TimeSpan Elapsed, Exception? FirstError);

    /// <summary><paramref name="inFlight"/> workers, each one request at a time, until the time is up (or, for
    /// write, <paramref name="count"/> objects are written when it is not 0; for read, every object is read once).</summary>
    private static async Task<BenchRun> RunBenchAsync(IoContext io, BenchOp kind, string prefix, long count, int objectSize, int inFlight,
        TimeSpan duration, CancellationToken ct)
    {
        var latency = new LatencyHistogram();
        var data = new byte[kind == BenchOp.Write ? objectSize : 0];
        Random.Shared.NextBytes(data);
        long next = -1;
        long errors = 0;
        Exception? firstError = null;
        var clock = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, inFlight).Select(async w =>
        {
            var rng = new Random(Random.Shared.Next() ^ w);
            while (clock.Elapsed < duration)
            {
                long n;
                if (kind == BenchOp.RandRead)
                {
                    n = rng.NextInt64(count);
                }
                else
                {
                    n = Interlocked.Increment(ref next);
                    if (count > 0 && n >= count)
                    {
                        break;
                    }
                }
                var name = prefix + n.ToString(CultureInfo.InvariantCulture);
                var start = Stopwatch.GetTimestamp();
                try
                {
                    if (kind == BenchOp.Write)
                    {
                        await io.WriteFullAsync(name, data, ct);
                    }
                    else
                    {
                        var got = await io.ReadAsync(name, 0, (ulong)objectSize, ct);
                        if (got.Length != objectSize)
                        {
                            throw new ClusterClientException($"{name} holds {got.Length} bytes, not the {objectSize} the write run wrote; run a write again");
                        }
                    }
                    latency.Record((long)Stopwatch.GetElapsedTime(start).TotalMicroseconds);
                }
                catch (ClusterClientException e)
                {
                    // Counted, not fatal: a benchmark reports how many requests failed (an OSD that went down, a
                    // timeout). The first is kept in case every one fails.
                    Interlocked.Increment(ref errors);
                    Interlocked.CompareExchange(ref firstError, e, null);
                }
            }
        }).ToList();
        await Task.WhenAll(workers);
        var elapsed = clock.Elapsed;
        var names = Math.Max(0, Interlocked.Read(ref next) + 1);
        return new BenchRun(latency, errors, count > 0 ? Math.Min(names, count) : names, elapsed, firstError);
    }

    private static async Task<(string Prefix, long Count, long Size)> ReadMetadataAsync(IoContext io, CancellationToken ct)
    {
        ReadOnlyMemory<byte> bytes;
        try
        {
            bytes = await io.ReadAsync(BenchMetadata, 0, 4096, ct);
        }
        catch (ObjectNotFoundException)
        {
            throw new CliException(ExitCodes.NotFound, $"pool {io.PoolName} holds no bench objects; run `appliance object bench {io.PoolName} --op write` first");
        }
        string? prefix = null;
        long count = -1, size = -1;
        foreach (var line in Encoding.UTF8.GetString(bytes.Span).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = line.Split(' ', 2);
            switch (parts[0])
            {
                case "prefix" when parts.Length == 2: prefix = parts[1]; break;
                case "objects" when parts.Length == 2 && long.TryParse(parts[1], CultureInfo.InvariantCulture, out var c): count = c; break;
                case "size" when parts.Length == 2 && long.TryParse(parts[1], CultureInfo.InvariantCulture, out var s): size = s; break;
            }
        }
        if (prefix is null || count < 0 || size is < 1 or > Piece)
        {
            throw new CliException(ExitCodes.InvalidInput, $"{BenchMetadata} in pool {io.PoolName} is not a bench run's record; run `appliance object bench {io.PoolName} --op write` again");
        }
        if (count == 0)
        {
            throw new CliException(ExitCodes.NotFound, $"the last bench write run in pool {io.PoolName} wrote no objects; run a longer one");
        }
        return (prefix, count, size);
    }

    private static async Task RemoveBenchObjectsAsync(IoContext io, string prefix, long count, int inFlight, CancellationToken ct)
    {
        long next = -1;
        async Task RemoveAsync(string name)
        {
            try
            {
                await io.RemoveAsync(name, ct);
            }
            catch (ObjectNotFoundException)
            {
                // Its write failed, or an earlier cleanup got it: gone either way.
            }
        }
        await Task.WhenAll(Enumerable.Range(0, inFlight).Select(async _ =>
        {
            long n;
            while ((n = Interlocked.Increment(ref next)) < count)
            {
                await RemoveAsync(prefix + n.ToString(CultureInfo.InvariantCulture));
            }
        }));
        await RemoveAsync(BenchMetadata);
    }
}
