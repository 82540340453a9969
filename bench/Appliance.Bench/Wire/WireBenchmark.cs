using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Appliance.Bench.Common;
using Appliance.Wire.Auth;
using Appliance.Wire.Messenger;

namespace Appliance.Bench.Wire;

/// <summary>
/// Messenger throughput between two processes over loopback: this process sends, a child process (this program,
/// `wire-peer`) receives. For 4 KiB and 1 MiB payloads, in crc and secure modes, beside a plain TCP stream between
/// the same two processes (the ceiling). A run ends when the receiver has acknowledged every message. Both processes
/// run their socket continuations the way a daemon does (<see cref="SocketCompletions.RunInline"/>); with
/// --pool-completions both leave them to the thread pool (the runtime's default), plain TCP included.
/// </summary>
public sealed class WireBenchmark : IBenchmark
{
    public string Name => "wire";

    public string Description => "messenger msgs/s and MB/s, 4 KiB and 1 MiB, crc and secure, vs plain TCP [--seconds 2] [--rounds 3] [--size 4K|1M] [--mode crc|secure] [--pool-completions]";

    public async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var a = new BenchArgs(args);
        // Before this process's first socket; the peer processes inherit the setting through the environment.
        if (a.Has("--pool-completions"))
        {
            Environment.SetEnvironmentVariable(SocketCompletions.InlineVariable, "0");
        }
        var inline = SocketCompletions.RunInline();
        var seconds = a.Get("--seconds", 2);
        // --size 4K|1M and --mode crc|secure narrow the run (for profiling one case).
        var sizes = a.Get("--size") is { } only ? [(int)a.GetSize("--size", 0)] : new[] { 4096, 1 << 20 };
        var modes = a.Get("--mode") is { } m ? [Enum.Parse<ConnectionMode>(m, ignoreCase: true)] : new[] { ConnectionMode.Crc, ConnectionMode.Secure };
        var dir = Directory.CreateTempSubdirectory("appliance-wire-bench-");
        try
        {
            var key = Secret.Generate();
            var keyring = new Keyring();
            keyring.Add(new KeyringEntry("client.bench", key, new Dictionary<string, string> { ["osd"] = "allow *" }));
            var keyringPath = Path.Combine(dir.FullName, "keyring");
            keyring.Save(keyringPath);

            // The machine is shared and noisy: the ceiling and our runs are interleaved in rounds and each figure is
            // the median of its rounds, so a burst of someone else's load does not land on one side only.
            var rounds = a.Get("--rounds", 3);
            Console.WriteLine($"wire: one sender process and one receiver process over loopback, {seconds} s per run, median of {rounds} interleaved rounds");
            Console.WriteLine(inline
                ? "(socket continuations on the event threads in both processes, as in a daemon; --pool-completions for the thread pool)"
                : "(socket continuations on the thread pool in both processes, the runtime's default)");
            Console.WriteLine("(cpu = CPU seconds of both processes per GB moved; its ratio, TCP's over ours, hardly depends on other load)");
            Console.WriteLine("(crc, secure: a 1 MiB payload is handed over, SendWithoutCopyAsync; +copy: SendAsync copies it)");
            Console.WriteLine($"{"payload",-8} {"mode",-12} {"msgs/s",10} {"MB/s",9} {"plain TCP MB/s",15} {"ratio",6} {"cpu",6} {"TCP cpu",8} {"ratio",6}   per round MB/s ratio");
            foreach (var size in sizes)
            {
                // A large payload goes the way a daemon sends data it read or received (handed over, not copied); the
                // copying send is measured beside it.
                var cases = modes.SelectMany(m => size >= MessageSession.HandOverFrom ? new[] { (Mode: m, HandOver: true), (Mode: m, HandOver: false) } : [(Mode: m, HandOver: false)]).ToList();
                var ceiling = new List<(double Bytes, double CpuPerGb)>();
                var ours = cases.ToDictionary(c => c, _ => new List<(double Msgs, double Bytes, double CpuPerGb)>());
                for (var r = 0; r < rounds; r++)
                {
                    ceiling.Add(await PlainTcpAsync(size, seconds, ct));
                    foreach (var c in cases)
                    {
                        ours[c].Add(await MessengerAsync(keyringPath, key, c.Mode, c.HandOver, size, seconds, ct));
                    }
                }
                var tcp = Stats.Median(ceiling.Select(x => x.Bytes));
                var tcpCpu = Stats.Median(ceiling.Select(x => x.CpuPerGb));
                foreach (var c in cases)
                {
                    var msgs = Stats.Median(ours[c].Select(x => x.Msgs));
                    var bytes = Stats.Median(ours[c].Select(x => x.Bytes));
                    var cpu = Stats.Median(ours[c].Select(x => x.CpuPerGb));
                    var perRound = string.Join(" ", ours[c].Select((x, i) => F(x.Bytes / ceiling[i].Bytes)));
                    var label = c.Mode.ToString().ToLowerInvariant() + (size >= MessageSession.HandOverFrom && !c.HandOver ? "+copy" : "");
                    Console.WriteLine($"{(size >= 1 << 20 ? $"{size >> 20} MiB" : $"{size >> 10} KiB"),-8} {label,-12} {Fio.Format(msgs),10} {Mb(bytes),9} {Mb(tcp),15} {F(bytes / tcp),6} {F(cpu),6} {F(tcpCpu),8} {F(tcpCpu / cpu),6}   {perRound}");
                }
            }
            return 0;
        }
        finally
        {
            dir.Delete(true);
        }
    }

    /// <summary>CPU time of both processes (this one and the peer) from construction on: a figure that other
    /// people's load on the machine hardly changes, unlike throughput.</summary>
    private sealed class CpuMeter
    {
        private readonly Process _peer;
        private readonly TimeSpan _start;

        public CpuMeter(Process peer)
        {
            _peer = peer;
            _start = Now();
        }

        private TimeSpan Now()
        {
            _peer.Refresh();
            return Process.GetCurrentProcess().TotalProcessorTime + _peer.TotalProcessorTime;
        }

        /// <summary>CPU seconds spent per GB moved.</summary>
        public double PerGb(double bytes) => (Now() - _start).TotalSeconds / (bytes / 1e9);
    }

    private static string F(double v) => v.ToString("0.00", CultureInfo.InvariantCulture);

    private static string Mb(double bytesPerSecond) => (bytesPerSecond / 1e6).ToString("0.0", CultureInfo.InvariantCulture);

    private static async Task<(double Msgs, double Bytes, double CpuPerGb)> MessengerAsync(string keyringPath, Secret key, ConnectionMode mode, bool handOver, int size, int seconds, CancellationToken ct)
    {
        using var peer = Peer.Start("messenger", keyringPath);
        var options = new MessengerOptions();
        await using var client = new MessengerClient(new IPEndPoint(IPAddress.Loopback, peer.Port), "client.bench", key, mode, options,
            (_, _) => ValueTask.CompletedTask, _ => { });
        await client.StartAsync();
        var payload = new byte[size];
        Random.Shared.NextBytes(payload);
        // The payload never changes, so handing it over again and again is legitimate.
        ValueTask<ulong> Send() => handOver ? client.Session.SendWithoutCopyAsync(300, payload, ct: ct) : client.Session.SendAsync(300, payload, ct: ct);
        // Warm up (both processes compile their hot paths to the optimised tier) before anything is measured: a
        // daemon runs for months, so its steady state is what counts. The plain TCP run has no code to warm.
        var warm = Stopwatch.StartNew();
        while (warm.Elapsed < TimeSpan.FromSeconds(1) && !ct.IsCancellationRequested)
        {
            await Send();
        }
        while (client.Session.UnackedMessages > 0)
        {
            await Task.Delay(1, ct);
        }
        long sent = 0;
        var cpu = new CpuMeter(peer.Process);
        var clock = Stopwatch.StartNew();
        var until = TimeSpan.FromSeconds(seconds);
        while (clock.Elapsed < until && !ct.IsCancellationRequested)
        {
            await Send();
            sent++;
        }
        // Done when the receiver has acknowledged everything.
        while (client.Session.UnackedMessages > 0)
        {
            await Task.Delay(1, ct);
        }
        var elapsed = clock.Elapsed.TotalSeconds;
        return (sent / elapsed, sent * (double)size / elapsed, cpu.PerGb(sent * (double)size));
    }

    private static async Task<(double Bytes, double CpuPerGb)> PlainTcpAsync(int size, int seconds, CancellationToken ct)
    {
        using var peer = Peer.Start("tcp", null);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, peer.Port), ct);
        var payload = new byte[size];
        Random.Shared.NextBytes(payload);
        long sent = 0;
        var cpu = new CpuMeter(peer.Process);
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(seconds) && !ct.IsCancellationRequested)
        {
            await socket.SendAsync(payload, ct);
            sent += size;
        }
        socket.Shutdown(SocketShutdown.Send);
        // The sink answers with the byte count once it has read everything: the same "received" end point.
        var count = new byte[8];
        var got = 0;
        while (got < 8)
        {
            var n = await socket.ReceiveAsync(count.AsMemory(got), ct);
            if (n == 0)
            {
                break;
            }
            got += n;
        }
        var elapsed = clock.Elapsed.TotalSeconds;
        var total = BitConverter.ToInt64(count);
        return (total / elapsed, cpu.PerGb(total));
    }

    /// <summary>The receiving child process (this program run as `wire-peer`).</summary>
    private sealed class Peer : IDisposable
    {
        private readonly Process _process;

        private Peer(Process process, int port)
        {
            _process = process;
            Port = port;
        }

        public int Port { get; }

        public Process Process => _process;

        public static Peer Start(string kind, string? keyringPath)
        {
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardInput = true };
            psi.ArgumentList.Add(typeof(WireBenchmark).Assembly.Location);
            psi.ArgumentList.Add("wire-peer");
            psi.ArgumentList.Add(kind);
            if (keyringPath is not null)
            {
                psi.ArgumentList.Add(keyringPath);
            }
            var p = Process.Start(psi)!;
            var port = int.Parse(p.StandardOutput.ReadLine()!, CultureInfo.InvariantCulture);
            return new Peer(p, port);
        }

        public void Dispose()
        {
            // Closing its stdin tells the peer to exit; it is ours, so we may also kill it if it does not.
            _process.StandardInput.Close();
            if (!_process.WaitForExit(5000))
            {
                _process.Kill();
            }
            _process.Dispose();
        }
    }
}

/// <summary>The receiving side of <see cref="WireBenchmark"/>, run in a separate process.</summary>
public sealed class WirePeer : IBenchmark
{
    public string Name => "wire-peer";

    public string Description => "(internal) the receiving process of the wire benchmark";

    public async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        if (args[0] == "tcp")
        {
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(1);
            Console.WriteLine(((IPEndPoint)listener.LocalEndPoint!).Port);
            using var s = await listener.AcceptAsync(ct);
            var buffer = new byte[1 << 20];
            long total = 0;
            int n;
            while ((n = await s.ReceiveAsync(buffer, ct)) > 0)
            {
                total += n;
            }
            await s.SendAsync(BitConverter.GetBytes(total), ct);
            return 0;
        }
        listener.Dispose();
        var keyring = Keyring.Load(args[1]);
        await using var server = new MessengerServer(e => keyring.Find(e)?.Key, new MessengerOptions(), (_, _) => ValueTask.CompletedTask, _ => { });
        var ep = (IPEndPoint)server.ListenTcp(new IPEndPoint(IPAddress.Loopback, 0));
        Console.WriteLine(ep.Port);
        await Console.In.ReadToEndAsync(ct); // until the parent closes our stdin
        return 0;
    }
}
