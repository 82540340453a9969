using Appliance.Fs.Session;
using Appliance.Fs.TestFs;
using Appliance.Platform.Native;

namespace Appliance.Fs.Tests.Session;

public class ConcurrencyTests
{
    [Fact]
    public async Task Concurrent_writers_and_readers_never_see_misplaced_data()
    {
        await using var m = TestMount.Start();
        const int Writers = 4;
        const int Blocks = 64;
        const int BlockSize = 16 * 1024;
        var path = m.P("shared");
        File.WriteAllBytes(path, new byte[Writers * Blocks * BlockSize]);
        using var stop = new CancellationTokenSource();
        var readerErrors = 0;
        var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(() =>
        {
            var fd = Posix.open(path, Constants.O_RDWR);
            try
            {
                var block = new byte[BlockSize];
                for (var round = 1; round <= 5; round++)
                {
                    for (var b = 0; b < Blocks; b++)
                    {
                        // Each value names its writer and round, so a reader can tell data that landed elsewhere.
                        Array.Fill(block, (byte)(w * 16 + round));
                        Posix.pwrite(fd, block, ((long)w * Blocks + b) * BlockSize);
                    }
                }
            }
            finally
            {
                Posix.close(fd);
            }
        })).ToArray();
        var readers = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
        {
            var block = new byte[BlockSize];
            var fd = Posix.open(path, Constants.O_RDONLY);
            try
            {
                var at = 0;
                while (!stop.IsCancellationRequested)
                {
                    var n = Posix.pread(fd, block, (long)at * BlockSize);
                    // Linux does not make a buffered read atomic against a concurrent write, so a block may mix
                    // rounds; but every byte must be one its own writer wrote there (or the initial zero).
                    var owner = at / Blocks;
                    if (n != BlockSize || block.Any(b => b != 0 && (b / 16 != owner || b % 16 is < 1 or > 5)))
                    {
                        Interlocked.Increment(ref readerErrors);
                    }
                    at = (at + 7) % (Writers * Blocks);
                }
            }
            finally
            {
                Posix.close(fd);
            }
        })).ToArray();
        await Task.WhenAll(writers).WaitAsync(TimeSpan.FromMinutes(2));
        stop.Cancel();
        await Task.WhenAll(readers);
        Assert.Equal(0, readerErrors);
        var final = File.ReadAllBytes(path);
        for (var w = 0; w < Writers; w++)
        {
            Assert.All(final.AsSpan(w * Blocks * BlockSize, Blocks * BlockSize).ToArray(), b => Assert.Equal(w * 16 + 5, b));
        }
    }

    [Fact]
    public async Task Concurrent_creates_in_one_directory_all_land()
    {
        await using var m = TestMount.Start();
        await Task.WhenAll(Enumerable.Range(0, 4).Select(t => Task.Run(() =>
        {
            for (var i = 0; i < 200; i++)
            {
                File.WriteAllText(m.P($"t{t}-{i}"), $"{t}:{i}");
            }
        })));
        var names = Directory.GetFiles(m.Path).Select(Path.GetFileName).ToHashSet();
        Assert.Equal(800, names.Count);
        Assert.Equal("3:199", File.ReadAllText(m.P("t3-199")));
    }

    [Fact]
    public async Task A_slow_asynchronous_backend_gives_the_same_answers()
    {
        // Every gated call completes later on another thread: the session's pending path (buffer kept by the
        // request, reply from the continuation) carries all of them.
        var fs = new MemoryFileSystem { Gate = async (_, _, _) => await Task.Delay(1) };
        await using var m = TestMount.Start(fs, new FuseOptions { Threads = 2 });
        var data = new byte[3 << 20];
        new Random(5).NextBytes(data);
        await Task.WhenAll(Enumerable.Range(0, 4).Select(i => Task.Run(async () =>
        {
            Directory.CreateDirectory(m.P($"d{i}"));
            await File.WriteAllBytesAsync(m.P($"d{i}/f"), data);
            Assert.Equal(data, await File.ReadAllBytesAsync(m.P($"d{i}/f")));
        })));
        Assert.Equal(0, m.Session.Timeouts);
        Assert.Equal(0, m.Session.BackendFaults);
    }

    [Fact]
    public async Task Forgotten_inodes_are_freed()
    {
        await using var m = TestMount.Start();
        var before = m.Fs.NodeCount;
        for (var i = 0; i < 100; i++)
        {
            File.WriteAllText(m.P($"f{i}"), "x");
        }
        Assert.Equal(before + 100, m.Fs.NodeCount);
        // READDIRPLUS hands out lookups too (one per listed entry); they must be given back like the others.
        Assert.Equal(101, Shell.Ok($"ls -l {m.Path}").Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        for (var i = 0; i < 100; i++)
        {
            File.Delete(m.P($"f{i}"));
        }
        // Unlinked, closed and evicted by the kernel: FORGET / BATCH_FORGET give the lookups back and the
        // filesystem drops the inodes. The kernel sends them asynchronously, so wait (bounded).
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (m.Fs.NodeCount != before && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }
        Assert.Equal(before, m.Fs.NodeCount);
    }
}
