using Appliance.Monitor.Storage;

namespace Appliance.Monitor.Tests.Storage;

/// <summary>
/// A crash at each step of a compaction (simulated by a hook that throws there, leaving the files exactly as the
/// step left them, and by tearing the temporary file) → the store reopens with every batch, and goes on.
/// </summary>
public class CompactionCrashTests
{
    private const int Seed = 99;

    public static TheoryData<int, bool> Steps()
    {
        var data = new TheoryData<int, bool>();
        foreach (var step in Enum.GetValues<CompactionStep>())
        {
            data.Add((int)step, false);
            data.Add((int)step, true);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Steps))]
    public void Crash_at_each_compaction_step_keeps_every_batch(int crashStep, bool alreadyCompactedOnce)
    {
        var crashAt = (CompactionStep)crashStep;
        using var dir = new TempDir();
        long n = 0;
        using (var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction))
        {
            if (alreadyCompactedOnce)
            {
                StoreTestKit.Write(store, Seed, 1, 20);
                store.Compact();
                n = 20;
            }
            StoreTestKit.Write(store, Seed, n + 1, n + 30);
            n += 30;
            store.CompactionHook = step =>
            {
                if (step == crashAt)
                {
                    throw new IOException($"simulated crash at {step}");
                }
            };
            var e = Assert.Throws<MonitorStoreFailedException>(store.Compact);
            Assert.Contains($"simulated crash at {crashAt}", e.Message, StringComparison.Ordinal);
            // A failed store writes nothing more: the files stay as the crash left them.
            Assert.Throws<MonitorStoreFailedException>(() => store.Apply(new WriteBatch().Put("x", "y", [1])));
            StoreTestKit.AssertHolds(store, Seed, n, "reads still work after the failure");
        }
        // The temporary snapshot may also be torn by the power loss (it was being written): tear it.
        var temp = Path.Combine(dir.Path, "snapshot.tmp");
        if (File.Exists(temp))
        {
            var bytes = File.ReadAllBytes(temp);
            File.WriteAllBytes(temp, bytes.AsSpan(0, bytes.Length / 2).ToArray());
        }
        using (var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction))
        {
            StoreTestKit.AssertHolds(store, Seed, n, $"reopened after a crash at {crashAt}");
            Assert.False(File.Exists(temp));
            Assert.False(File.Exists(Path.Combine(dir.Path, "log.tmp")));
            StoreTestKit.Write(store, Seed, n + 1, n + 5);
        }
        using var again = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction);
        StoreTestKit.AssertHolds(again, Seed, n + 5, "after writing on");
        Assert.Empty(again.OpenNotes);
    }

    [Fact]
    public void A_snapshot_renamed_but_the_old_log_still_in_place_finishes_the_compaction_at_open()
    {
        using var dir = new TempDir();
        using (var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction))
        {
            StoreTestKit.Write(store, Seed, 1, 12);
            store.CompactionHook = step =>
            {
                if (step == CompactionStep.SnapshotDurable)
                {
                    throw new IOException("crash");
                }
            };
            Assert.Throws<MonitorStoreFailedException>(store.Compact);
        }
        using var reopened = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction);
        Assert.Contains(reopened.OpenNotes, n => n.Contains("finished a compaction", StringComparison.Ordinal));
        Assert.Equal(12ul, reopened.Stats.SnapshotSequence);
        Assert.Equal(LogFormat.HeaderSize, reopened.Stats.LogBytes);
        StoreTestKit.AssertHolds(reopened, Seed, 12, "after finishing");
    }
}
