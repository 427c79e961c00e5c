module github.com/tchannel-vcr/tchannel-mock-go

go 1.19
