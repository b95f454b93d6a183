import CycleGAN
import Foundation
import Tensor
import Testing

@testable import Models

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct TrainingCheckpointTests {
    let dir: ScratchDirectory
    /// `<model>/training`, where the trainer keeps its checkpoint.
    let folder: URL

    init() throws {
        dir = try ScratchDirectory()
        folder = dir.url.appendingPathComponent("horse2zebra/training")
    }

    /// Tensors of several shapes (a conv weight, a bias, a pool image, a
    /// scalar, an empty one) whose values depend on `seed`.
    static func checkpoint(_ seed: Int) -> TrainingCheckpoint {
        let shapes: [String: [Int]] = [
            "G_A/model.1.weight": [8, 3, 7, 7], "G_A/model.1.bias": [8],
            "adam_G.m/G_A/model.1.weight": [8, 3, 7, 7], "pool_A/3": [1, 3, 16, 16], "adam_G.step": [],
            "empty": [0],
        ]
        var tensors: [String: Tensor] = [:]
        for (i, (name, shape)) in shapes.sorted(by: { $0.key < $1.key }).enumerated() {
            let t = Tensor(shape: shape)
            for k in 0..<t.count { t.data[k] = Float(seed * 1000 + i * 100 + k % 97) * 0.01 - 3 }
            tensors[name] = t
        }
        let state = Data(#"{"epoch": \#(seed), "iteration": \#(seed * 400), "rng": {"pool": [1, 2, 3]}}"#.utf8)
        return TrainingCheckpoint(tensors: tensors, state: state)
    }

    static func expectSame(
        _ a: TrainingCheckpoint?, _ b: TrainingCheckpoint, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let a else {
            Issue.record("no checkpoint was loaded", sourceLocation: sourceLocation)
            return
        }
        #expect(a.state == b.state, sourceLocation: sourceLocation)
        #expect(Set(a.tensors.keys) == Set(b.tensors.keys), sourceLocation: sourceLocation)
        for (name, t) in b.tensors {
            guard let u = a.tensors[name] else { continue }
            let identical = u.shape == t.shape && u.array == t.array
            #expect(identical, "\(name)", sourceLocation: sourceLocation)
        }
    }

    func contents(_ url: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
    }

    var checkpointFolder: URL { folder.appendingPathComponent("checkpoint") }

    // MARK: round trip

    @Test func aCheckpointReadsBackBitIdentical() throws {
        let written = Self.checkpoint(1)
        try written.write(in: folder)
        #expect(try contents(folder) == ["checkpoint"])
        #expect(try contents(checkpointFolder) == ["manifest.json", "state.json", "tensors.safetensors"])
        let loaded = try TrainingCheckpoint.load(in: folder)
        Self.expectSame(loaded, written)
        // Loaded tensors are the caller's own: writing into them changes no file.
        loaded?.tensors["G_A/model.1.bias"]?.fill(42)
        Self.expectSame(try TrainingCheckpoint.load(in: folder), written)
        // The tensors file is plain safetensors, the names as given.
        let file = try SafeTensorsFile.open(checkpointFolder.appendingPathComponent("tensors.safetensors"))
        #expect(file["pool_A/3"]?.shape == [1, 3, 16, 16])
    }

    @Test func noCheckpointIsNil() throws {
        #expect(try TrainingCheckpoint.load(in: folder) == nil)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        #expect(try TrainingCheckpoint.load(in: folder) == nil)
    }

    @Test func aNewCheckpointReplacesTheOldOne() throws {
        try Self.checkpoint(1).write(in: folder)
        try Self.checkpoint(2).write(in: folder)
        try Self.checkpoint(3).write(in: folder)
        Self.expectSame(try TrainingCheckpoint.load(in: folder), Self.checkpoint(3))
        #expect(try contents(folder) == ["checkpoint"])
    }

    // MARK: interrupted writes

    /// A write killed after each of its steps, over an older checkpoint: the
    /// old one is loaded until the new one is complete and its predecessor
    /// renamed aside, the new one from then on; leftovers are removed.
    @Test(arguments: TrainingCheckpoint.WriteStep.allCases)
    func aWriteKilledAfterAnyStepLeavesACompleteCheckpoint(_ step: TrainingCheckpoint.WriteStep) throws {
        let old = Self.checkpoint(1)
        let new = Self.checkpoint(2)
        try old.write(in: folder)
        try new.write(in: folder, stoppingAfter: step)
        let left = try contents(folder).map { $0.split(separator: "-").first.map(String.init) ?? $0 }.sorted()
        let newIsThere: Bool
        switch step {
        case .incomingFolderMade, .tensorsWritten, .stateWritten, .manifestWritten:
            #expect(left == [".checkpoint.incoming", "checkpoint"])
            newIsThere = false
        case .oldRenamedAside:
            #expect(left == [".checkpoint.incoming", ".checkpoint.old"])
            newIsThere = true
        case .newRenamedIn:
            #expect(left == [".checkpoint.old", "checkpoint"])
            newIsThere = true
        }
        Self.expectSame(try TrainingCheckpoint.load(in: folder), newIsThere ? new : old)
        #expect(try contents(folder) == ["checkpoint"])
        // And the next write goes through.
        try Self.checkpoint(3).write(in: folder)
        Self.expectSame(try TrainingCheckpoint.load(in: folder), Self.checkpoint(3))
        #expect(try contents(folder) == ["checkpoint"])
    }

    /// The first write of a run killed: nothing until its manifest is written.
    @Test(arguments: TrainingCheckpoint.WriteStep.allCases)
    func aFirstWriteKilledAfterAnyStep(_ step: TrainingCheckpoint.WriteStep) throws {
        let new = Self.checkpoint(2)
        try new.write(in: folder, stoppingAfter: step)
        switch step {
        case .incomingFolderMade, .tensorsWritten, .stateWritten:
            #expect(try TrainingCheckpoint.load(in: folder) == nil)
            #expect(try contents(folder) == [])
        case .manifestWritten, .oldRenamedAside, .newRenamedIn:
            Self.expectSame(try TrainingCheckpoint.load(in: folder), new)
            #expect(try contents(folder) == ["checkpoint"])
        }
    }

    /// Killed while the tensors were being written: a half file under
    /// AtomicFile's temporary name, or (on a file system that lost the data
    /// but kept the rename) under its own name, with no manifest.
    @Test func aHalfWrittenTensorsFileIsIgnored() throws {
        let old = Self.checkpoint(1)
        try old.write(in: folder)
        let tensors = try Data(contentsOf: checkpointFolder.appendingPathComponent("tensors.safetensors"))
        for name in [".tensors.safetensors.123.456.tmp", "tensors.safetensors"] {
            let incoming = folder.appendingPathComponent(".checkpoint.incoming-abc")
            try FileManager.default.createDirectory(at: incoming, withIntermediateDirectories: true)
            try tensors.prefix(tensors.count / 2).write(to: incoming.appendingPathComponent(name))
            Self.expectSame(try TrainingCheckpoint.load(in: folder), old)
            #expect(try contents(folder) == ["checkpoint"])
        }
    }

    /// The moment with no `checkpoint/`: a torn incoming folder (its manifest
    /// there, its tensors file short) is passed over for the one renamed aside.
    @Test func aTornIncomingFolderIsPassedOverForTheOldOne() throws {
        let old = Self.checkpoint(1)
        try old.write(in: folder)
        try Self.checkpoint(2).write(in: folder, stoppingAfter: .oldRenamedAside)
        let incoming = try #require(try contents(folder).first { $0.hasPrefix(".checkpoint.incoming-") })
        let tensors = folder.appendingPathComponent(incoming).appendingPathComponent("tensors.safetensors")
        try Data(try Data(contentsOf: tensors).dropLast(100)).write(to: tensors)
        Self.expectSame(try TrainingCheckpoint.load(in: folder), old)
        #expect(try contents(folder) == ["checkpoint"])
    }

    // MARK: damage

    @Test func aTruncatedTensorsFileIsAClearError() throws {
        try Self.checkpoint(1).write(in: folder)
        let url = checkpointFolder.appendingPathComponent("tensors.safetensors")
        let good = try Data(contentsOf: url)
        try good.prefix(good.count - 1000).write(to: url)
        let error = try #require(throws: ModelStoreError.self) { try TrainingCheckpoint.load(in: folder) }
        #expect(error.problem.contains("tensors.safetensors has \(good.count - 1000) bytes"))
        #expect(error.problem.contains("truncated"))
        #expect(error.problem.contains("delete \(checkpointFolder.path) to train from the start"))
    }

    @Test func anAlteredByteIsAClearError() throws {
        try Self.checkpoint(1).write(in: folder)
        let url = checkpointFolder.appendingPathComponent("tensors.safetensors")
        var data = try Data(contentsOf: url)
        data[data.count - 7] ^= 0x10
        try data.write(to: url)
        let error = try #require(throws: ModelStoreError.self) { try TrainingCheckpoint.load(in: folder) }
        #expect(error.problem.contains("sha256 of tensors.safetensors"))
        #expect(error.problem.contains("altered"))
    }

    @Test func aDamagedStateOrManifestIsAClearError() throws {
        try Self.checkpoint(1).write(in: folder)
        let state = checkpointFolder.appendingPathComponent("state.json")
        let good = try Data(contentsOf: state)
        try good.prefix(10).write(to: state)
        let stateError = try #require(throws: ModelStoreError.self) { try TrainingCheckpoint.load(in: folder) }
        #expect(stateError.problem.contains("state.json has 10 bytes"))

        try good.write(to: state)
        try Data("{\"formatVersion\": 1, ".utf8).write(to: checkpointFolder.appendingPathComponent("manifest.json"))
        let manifestError = try #require(throws: ModelStoreError.self) {
            try TrainingCheckpoint.load(in: folder)
        }
        #expect(manifestError.problem.contains("manifest.json cannot be read"))
    }

    // MARK: a real kill -9

    /// The test process itself, run again as `killedWriter` in the folder this names.
    static let writerFolder = ProcessInfo.processInfo.environment["CYCLEGAND_TEST_CHECKPOINT_WRITER"]

    /// A trainer's loop: resumes from the checkpoint there (as `n`), then
    /// writes n+1, n+2, … (every value of every tensor is n) until it is killed.
    @Test(.enabled(if: writerFolder != nil, "run by killedWhileWritingAtRandomMoments"))
    func killedWriter() throws {
        let folder = URL(fileURLWithPath: Self.writerFolder!)
        var n = try TrainingCheckpoint.load(in: folder).map(Self.counter) ?? 0
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            n += 1
            try Self.counted(n).write(in: folder)
        }
    }

    /// 4 MB of tensors whose every value is `n`, and `n` in the state.
    static func counted(_ n: Int) -> TrainingCheckpoint {
        var tensors: [String: Tensor] = [:]
        for (i, shape) in [[256, 256, 3, 3], [64, 64, 7, 7], [1, 3, 128, 128], [64]].enumerated() {
            let t = Tensor(shape: shape)
            t.fill(Float(n))
            tensors["t\(i)"] = t
        }
        return TrainingCheckpoint(tensors: tensors, state: Data(#"{"n": \#(n)}"#.utf8))
    }

    static func counter(_ checkpoint: TrainingCheckpoint) throws -> Int {
        let json = try JSONSerialization.jsonObject(with: checkpoint.state) as? [String: Int]
        return try #require(json?["n"])
    }

    /// The writer above, killed with SIGKILL at moments spread over its
    /// writes: every time, the checkpoint left is complete and consistent
    /// (all values equal the state's counter), never older than the last one
    /// seen, and the next run resumes from it.
    @Test func killedWhileWritingAtRandomMoments() throws {
        guard Self.writerFolder == nil else { return }
        var seen = 0
        for delay in [0.3, 0.45, 0.5, 0.6, 0.65, 0.8] {
            let writer = Process()
            writer.executableURL = URL(fileURLWithPath: "/proc/self/exe")
            writer.arguments = [
                "--testing-library", "swift-testing", "--filter", "TrainingCheckpointTests/killedWriter",
            ]
            writer.environment = ProcessInfo.processInfo.environment.merging(
                ["CYCLEGAND_TEST_CHECKPOINT_WRITER": folder.path]) { $1 }
            writer.standardOutput = FileHandle.nullDevice
            writer.standardError = FileHandle.nullDevice
            try writer.run()
            Thread.sleep(forTimeInterval: delay)
            kill(writer.processIdentifier, SIGKILL)
            writer.waitUntilExit()
            #expect(writer.terminationReason == .uncaughtSignal, "the writer stopped before it was killed")

            let loaded = try TrainingCheckpoint.load(in: folder)
            guard let loaded else {
                #expect(seen == 0, "the checkpoint vanished")
                continue
            }
            let n = try Self.counter(loaded)
            #expect(n >= seen)
            seen = n
            #expect(Set(loaded.tensors.keys) == ["t0", "t1", "t2", "t3"])
            for (name, t) in loaded.tensors {
                let consistent = t.array.allSatisfy { $0 == Float(n) }
                #expect(consistent, "\(name) is not all \(n)")
            }
            #expect(try contents(folder) == ["checkpoint"])
        }
        // The writer got through several checkpoints, so the kills hit it at work.
        #expect(seen > 3)
    }

    /// `CYCLEGAND_CHECKPOINT_BENCH=1`: times writing and loading a checkpoint
    /// of the real size (ngf 64 / 9 blocks, ndf 64 / 3 layers; values, Adam m
    /// and v; two full pools of 256×256 images), and of 200 MB of it.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["CYCLEGAND_CHECKPOINT_BENCH"] != nil))
    func timesARealSizeCheckpoint() throws {
        var all: [(String, [Int])] = []
        for network in ["G_A", "G_B"] {
            all += GeneratorArchitecture().parameterShapes().map { ("\(network)/\($0.name)", $0.shape) }
        }
        for network in ["D_A", "D_B"] {
            all += DiscriminatorArchitecture().parameterShapes().map { ("\(network)/\($0.name)", $0.shape) }
        }
        all += all.map { ("adam.m/\($0.0)", $0.1) } + all.map { ("adam.v/\($0.0)", $0.1) }
        for pool in ["pool_A", "pool_B"] { all += (0..<50).map { ("\(pool)/\($0)", [1, 3, 256, 256]) } }
        var prefix: [(String, [Int])] = []
        var bytes = 0
        for entry in all where bytes < 200 << 20 {
            prefix.append(entry)
            bytes += 4 * entry.1.reduce(1, *)
        }
        for set in [prefix, all] {
            var tensors: [String: Tensor] = [:]
            for (i, (name, shape)) in set.enumerated() {
                let t = Tensor(shape: shape)
                for k in stride(from: 0, to: t.count, by: 1024) { t.data[k] = Float(i + k) }
                tensors[name] = t
            }
            let checkpoint = TrainingCheckpoint(tensors: tensors, state: Data(#"{"epoch": 1}"#.utf8))
            let clock = ContinuousClock()
            let written = try clock.measure { try checkpoint.write(in: folder) }
            var loaded: TrainingCheckpoint?
            let read = try clock.measure { loaded = try TrainingCheckpoint.load(in: folder) }
            let size =
                try FileManager.default.attributesOfItem(
                    atPath: checkpointFolder.appendingPathComponent("tensors.safetensors").path)[.size] as! Int
            print("checkpoint of \(set.count) tensors, \(size >> 20) MB: write \(written), load \(read)")
            Self.expectSame(loaded, checkpoint)
        }
    }
}
