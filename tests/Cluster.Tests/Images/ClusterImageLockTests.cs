using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Appliance.BlockDev.Nbd.Protocol;
using Appliance.BlockDev.Tests;
using Appliance.Platform.Native;

namespace Appliance.Cluster.Tests.Images;

/// <summary>
/// One writer per image, with fencing, and restarts under a connected client — real processes: `nbd serve` servers
/// SIGSTOPped, continued and SIGKILLed by their pids, the raw NBD client and qemu-io with reconnect-delay.
/// </summary>
public sealed partial class ClusterImageTests
{
    private static byte[] Pattern(byte b, int n) => Enumerable.Repeat(b, n).ToArray();

    /// <summary>The client instance a server says it serves as ("as client.admin:NONCE").</summary>
    private static string InstanceOf(NbdServerProcess server) =>
        InstanceRegex().Match(server.Output) is { Success: true } m ? m.Groups[1].Value : throw new InvalidOperationException("no instance in:\n" + server.Output);

    [GeneratedRegex(@" as (client\.[^ ]+:\d+) ")]
    private static partial Regex InstanceRegex();

    [Fact]
    public async Task ASecondServerIsRefusedThenTakesOverAfterTheLeaseAndTheOldServersLateWriteIsRefusedByTheOsds()
    {
        await ApplianceOkAsync("image", "create", "data/locked", "--size", "8M");
        await using var a = await ServeAsync("a.sock", leaseSeconds: 3);
        await using var b = await ServeAsync("b.sock", leaseSeconds: 3);

        // A client of A: A takes the lock.
        await using var c1 = await RawNbdClient.ConnectUnixAsync(a.Socket);
        await c1.NegotiateAsync("data/locked");
        await c1.SendRequestAsync(NbdCommand.Write, 1, 0, 4096, 0, Pattern(0xa1, 4096));
        Assert.Equal(0u, (await c1.ReadReplyAsync()).ErrorValue);
        var info = await ApplianceOkAsync("image", "info", "data/locked");
        Assert.Contains(a.Socket, info, StringComparison.Ordinal);

        // Removing it is refused while it is served, naming the server.
        var (code, rm) = await LocalCluster.ApplianceAsync("image", "rm", "data/locked", "--conf-dir", cluster.ConfDir);
        Assert.True(code == 6 && rm.Contains(a.Socket, StringComparison.Ordinal), $"image rm exited {code}: {rm}");

        // B is refused at NBD_OPT_GO with a message naming A.
        await using var c2 = await RawNbdClient.ConnectUnixAsync(b.Socket);
        await c2.HandshakeAsync();
        await c2.SendOptionAsync((uint)NbdOption.StructuredReply, []);
        Assert.Equal(OptionReplyType.Ack, (await c2.ReadOptionReplyAsync()).Type);
        await c2.SendOptionAsync((uint)NbdOption.Go, RawNbdClient.InfoPayload("data/locked"));
        var refused = await c2.ReadOptionReplyAsync();
        var message = Encoding.UTF8.GetString(refused.Data);
        Assert.True(refused.Type == OptionReplyType.ErrPolicy && message.Contains(a.Socket, StringComparison.Ordinal), $"{refused.Type}: {message}");

        // A stops (as a server that hangs): a write sent to it now is not answered. Sent only once every thread of A
        // is stopped: until then A may still carry it out, before the takeover, and rightly answer it 0 when continued.
        await a.StopAsync();
        await c1.SendRequestAsync(NbdCommand.Write, 2, 0, 4096, 0, Pattern(0xa2, 4096));
        await Poll.UntilAsync(async () => (await ApplianceOkAsync("image", "info", "data/locked")).Contains("lease expired", StringComparison.Ordinal),
            TimeSpan.FromSeconds(60), "A's lease to run out");

        // B takes over: it has the monitors blocklist A first.
        await c2.SendOptionAsync((uint)NbdOption.Go, RawNbdClient.InfoPayload("data/locked"));
        while ((await c2.ReadOptionReplyAsync()) is var r && r.Type != OptionReplyType.Ack)
        {
            Assert.True(r.Type == OptionReplyType.Info, $"GO after the lease ran out: {r.Type} {Encoding.UTF8.GetString(r.Data)}");
        }
        await c2.SendRequestAsync(NbdCommand.Write, 3, 0, 4096, 0, Pattern(0xb1, 4096));
        Assert.Equal(0u, (await c2.ReadReplyAsync()).ErrorValue);
        var blocklist = await ApplianceOkAsync("osd", "blocklist", "ls");
        Assert.Contains(InstanceOf(a), blocklist, StringComparison.Ordinal);

        // A goes on: its late write reaches the OSDs, which refuse it; the client hears an error.
        a.Signal(Posix.SIGCONT);
        var late = await c1.ReadReplyAsync();
        var read = new byte[4096];
        await c2.SendRequestAsync(NbdCommand.Read, 4, 0, 4096);
        Assert.Equal(0u, await c2.ReadStructuredReadAsync(4, 0, read));
        // EPERM: the image is open read-write in A, so only the OSDs' refusal of a blocklisted client maps to it.
        Assert.True(late.Cookie == 2 && late.ErrorValue == (uint)NbdError.Perm,
            $"A's late write was answered {late.ErrorValue} (cookie {late.Cookie}); B reads 0x{read[0]:x2} back (0xb1 is B's, 0xa2 A's)\n{a.Output}\n{cluster.Logs()}");

        // What B wrote is there, not A's late write.
        Assert.Equal(Pattern(0xb1, 4096), read);
        info = await ApplianceOkAsync("image", "info", "data/locked");
        Assert.Contains(b.Socket, info, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AServerKilledUnderAQemuClientIsStartedAgainAndTheClientCarriesOnLosingNoWrite()
    {
        await ApplianceOkAsync("image", "create", "data/restart", "--size", "16M", "--object-size", "1M");
        var id = Regex.Match(await ApplianceOkAsync("image", "info", "data/restart"), @"id\s+([0-9a-f]+)").Groups[1].Value;
        var socket = PathOf("restart.sock");
        var server = await NbdServerProcess.StartAsync(cluster, socket, 20);
        try
        {
            var options = $"driver=nbd,server.type=unix,server.path={socket},export=data/restart,reconnect-delay=60";
            var commands = new List<string>();
            for (var i = 0; i < 4; i++)
            {
                commands.Add($"write -P 0x{0x40 + i:x2} {i << 20} {1 << 20}");
            }
            commands.Add("sleep 8000"); // the server is killed and started again about here
            for (var i = 4; i < 12; i++)
            {
                commands.Add($"write -P 0x{0x40 + i:x2} {(i << 20) - 4096} {(1 << 20) + 4096}");
                commands.Add("flush");
            }
            var qemu = Tools.RunAsync(QemuIo, ["--image-opts", options, .. commands.SelectMany(c => new[] { "-c", c })], TimeSpan.FromSeconds(180));

            // Once the first writes are in the cluster (their objects exist), kill the server and start it again.
            await using (var client = await cluster.ConnectAsync(TimeSpan.FromSeconds(20)))
            {
                var pool = client.OpenPool("data");
                await Poll.UntilAsync(async () =>
                {
                    try
                    {
                        await pool.StatAsync($"image_data.{id}.{3:x16}");
                        return true;
                    }
                    catch (Appliance.Client.ObjectNotFoundException)
                    {
                        return false;
                    }
                }, TimeSpan.FromSeconds(60), "qemu-io's first writes");
            }
            var old = InstanceOf(server);
            Assert.False(qemu.IsCompleted, "qemu-io finished before the server was killed: the test would show nothing");
            await server.KillAsync();
            await server.DisposeAsync();
            // Same identity (entity, host, socket): it takes its own lock back at once, fencing the old instance.
            server = await NbdServerProcess.StartAsync(cluster, socket, 20);
            var result = await qemu;
            Assert.True(result.ExitCode == 0 && !result.All.Contains("error", StringComparison.OrdinalIgnoreCase) && !result.All.Contains("failed", StringComparison.OrdinalIgnoreCase),
                $"qemu-io exited {result.ExitCode}:\n{result.All}\nserver:\n{server.Output}");
            Assert.Contains(old, await ApplianceOkAsync("osd", "blocklist", "ls"), StringComparison.Ordinal);

            // Every acknowledged write reads back (the later ones overlap the earlier ones' last 4 KiB).
            var reads = new List<string>();
            for (var i = 0; i < 12; i++)
            {
                var start = i < 4 ? (long)i << 20 : ((long)i << 20) - 4096;
                var end = i < 3 ? (long)(i + 1) << 20 : i < 11 ? ((long)(i + 1) << 20) - 4096 : 12L << 20;
                if (i == 3)
                {
                    end = (4L << 20) - 4096;
                }
                reads.Add($"read -P 0x{0x40 + i:x2} {start.ToString(CultureInfo.InvariantCulture)} {(end - start).ToString(CultureInfo.InvariantCulture)}");
            }
            var check = await QemuIoAsync(server.Uri("data/restart"), [.. reads]);
            Assert.DoesNotContain("Pattern verification failed", check.All, StringComparison.Ordinal);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }
}
