using System.Buffers.Binary;
using Appliance.Osd.Protocol;

namespace Appliance.Client.Tests;

/// <summary>
/// Appends under churn: primaries that apply a write and never answer (as one that crashed after its commit), are
/// marked down and come back, and PGs that answer "try again". Every append must be applied exactly once — which
/// holds only if each resend keeps its tid (the fake OSDs share one object set that remembers applied tids, as the
/// PG log does). Seeded: APPLIANCE_SEED replays a failure.
/// </summary>
public class ChurnTests
{
    [Fact]
    public async Task Appends_through_primaries_that_die_after_applying_are_applied_exactly_once()
    {
        var seed = TestSeed.Get(nameof(Appends_through_primaries_that_die_after_applying_are_applied_exactly_once), fallback: 4242);
        var random = new Random(seed);
        await using var cluster = new TestCluster(4);
        var shared = new FakeObjects();
        var condemned = new bool[cluster.Osds.Length];
        var answerLock = new Lock();
        foreach (var osd in cluster.Osds)
        {
            osd.Objects = shared;
            osd.Answer = r =>
            {
                bool hang, tryAgain;
                lock (answerLock)
                {
                    hang = condemned[osd.Id];
                    tryAgain = random.Next(10) == 0;
                }
                if (tryAgain)
                {
                    return FakeOsd.Reply(r, OsdResult.TryAgain, osd.Epoch);
                }
                var reply = shared.Apply(r, osd.Epoch);
                return hang ? null : reply; // a condemned OSD applies, then dies before it answers
            };
        }
        cluster.Publish(size: 3);
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);

        const int objects = 12;
        const int appends = 240;
        const int rounds = 6;
        var completed = 0;
        var done = new SemaphoreSlim(0);
        var expected = Enumerable.Range(0, objects).Select(_ => new List<ulong>()).ToArray();
        var writes = new List<Task>();
        for (var i = 0; i < appends; i++)
        {
            var record = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(record, (ulong)i);
            var obj = i % objects;
            expected[obj].Add((ulong)i);
            writes.Add(pool.AppendAsync($"log-{obj}", record).ContinueWith(t =>
            {
                Interlocked.Increment(ref completed);
                done.Release();
                return t;
            }, TaskScheduler.Default).Unwrap());
        }

        for (var round = 0; round < rounds; round++)
        {
            int victim;
            lock (answerLock)
            {
                victim = random.Next(cluster.Osds.Length);
                condemned[victim] = true;
            }
            cluster.Publish(down: [victim], size: 3);
            // Let a share of the appends complete before the victim comes back (bounded: the appends' own deadlines).
            for (var k = 0; k < appends / (rounds + 1) && Volatile.Read(ref completed) < appends; k++)
            {
                Assert.True(await done.WaitAsync(TimeSpan.FromSeconds(40)), "appends stopped completing");
            }
            lock (answerLock)
            {
                condemned[victim] = false;
            }
            cluster.Publish(size: 3);
        }
        await Task.WhenAll(writes);

        for (var obj = 0; obj < objects; obj++)
        {
            var data = (await pool.ReadAsync($"log-{obj}", 0, 1 << 20)).ToArray();
            var records = Enumerable.Range(0, data.Length / 8).Select(i => BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(i * 8))).ToList();
            Assert.Equal(expected[obj].Order(), records.Order());
        }
    }
}
