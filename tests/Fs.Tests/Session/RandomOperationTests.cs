using Xunit.Abstractions;

namespace Appliance.Fs.Tests.Session;

/// <summary>
/// The same seeded sequence of syscalls on the mount and on a directory of the local filesystem (ext4); every
/// result (return value or errno, bytes read, attributes, listings) must be identical (<see cref="SyscallComparison"/>).
/// Seed: APPLIANCE_SEED; length: short by default, long with APPLIANCE_SOAK=1.
/// </summary>
public class RandomOperationTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("direct")]
    [InlineData("async-backend")]
    [InlineData("writeback-cache")]
    public async Task Mount_and_local_disk_give_identical_results(string variant)
    {
        var soak = TestSeed.Soak;
        var count = soak ? 20_000 : 600;
        var seed = TestSeed.Get($"RandomOperationTests({variant}, {count} operations)", output);

        var local = TestMount.NewDirectory("local");
        var outcomes = new Dictionary<string, int>();
        // direct: every answer is ready at once; async-backend: every gated answer completes later on another
        // thread (the session's pending path); writeback-cache: the kernel caches writes and attributes.
        var fs = new Appliance.Fs.TestFs.MemoryFileSystem();
        if (variant == "async-backend")
        {
            fs.Gate = async (_, _, _) => await Task.Yield();
        }
        await using var m = TestMount.Start(fs, new Appliance.Fs.Session.FuseOptions { WritebackCache = variant == "writeback-cache" });
        try
        {
            SyscallComparison.Run(m.Path, local, count, seed, variant, outcomes);
        }
        finally
        {
            output.WriteLine(string.Join(", ", outcomes.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $"{o.Key}: {o.Value}")));
            Directory.Delete(local, recursive: true);
        }
    }
}
